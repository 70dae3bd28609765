package io.streamscore.engine;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The de-duplication rules of features/dedup.py (is_copy, verdict, resolve), in Java for the dedup operator
 * (public for tests/integration/test_jvm_dedup.py, which holds them to the Python ones).
 * Details are word for word the Python ones, so a dead letter reads the same whichever side wrote it.
 */
public final class DedupRules {
    static final String DUPLICATE = "duplicate";
    static final String CONFLICT = "duplicate_id_conflict";

    private DedupRules() {}

    /** Is a record at {@code time} a copy of the one remembered at {@code firstTime}? */
    public static boolean isCopy(long firstTime, long time, long horizonMs) {
        // |time - firstTime| < horizon without overflow for any two longs
        long lo = Math.min(firstTime, time), hi = Math.max(firstTime, time);
        long diff = hi - lo;
        return diff >= 0 && diff < horizonMs;
    }

    /** {reason, detail} for a copy of the first record. */
    public static String[] verdict(long firstTime, byte[] firstFp, long time, byte[] fp) {
        if (time == firstTime && Arrays.equals(fp, firstFp)) {
            return new String[] {DUPLICATE, "event_id seen before with the same content (event_time " + firstTime + ")"};
        }
        return new String[] {CONFLICT, "event_id seen before with other content: first copy event_time " + firstTime
                + " (fingerprint " + Fingerprint.hex(firstFp, 8) + "), this copy event_time " + time
                + " (fingerprint " + Fingerprint.hex(fp, 8) + ")"};
    }

    /**
     * BATCH: the outcome of each record of one event_id (null: kept), independent of the order of the input:
     * records are taken by (event_time, fingerprint); one is kept when no kept one lies within the horizon
     * before it, and is otherwise judged against that kept one.
     */
    public static List<String[]> resolve(long[] times, byte[][] fps, long horizonMs) {
        Integer[] order = new Integer[times.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (a, b) -> times[a] != times[b] ? Long.compare(times[a], times[b])
                : Fingerprint.compare(fps[a], fps[b]));
        List<String[]> out = new ArrayList<>(Arrays.asList(new String[times.length][]));
        int first = -1;
        for (int i : order) {
            if (first >= 0 && isCopy(times[first], times[i], horizonMs)) {
                out.set(i, verdict(times[first], fps[first], times[i], fps[i]));
            } else {
                first = i;
            }
        }
        return out;
    }
}
