package io.streamscore.engine;

import java.io.Serializable;
import java.util.HashSet;
import java.util.Objects;

/**
 * The arithmetic of a feature set's aggregations over one key's {@link History}; the same rules as
 * the pandas execution of the declaration (features/featureset.py, {@code Aggregation}):
 *
 * <ul>
 *   <li>window W of event e at t: the key's events with t - W &lt; time &lt;= t at or before e in
 *       (time, id) order; "prior" leaves e out;</li>
 *   <li>sum: the current value (if included), then prior values newest to oldest, added left to right;
 *       starting from 0.0 where the current event is not included; mean = that sum / n;</li>
 *   <li>std_pop: exactly 0.0 when all values are equal, else two passes, oldest to newest, with that mean;</li>
 *   <li>last: the previous event in order, or the newest event ever seen if it is before e (it survives
 *       trimming); first_seen: the current value is not among the prior values in the window, null
 *       where the current value is null; nulls are skipped by every other op;</li>
 *   <li>fewer than min_count values: null.</li>
 * </ul>
 */
public final class Aggregator implements Serializable {
    private static final long serialVersionUID = 1L;

    private final Spec spec;
    private final Spec.Agg[] aggs;
    private final Spec.Kind[] kinds;

    public Aggregator(Spec spec) {
        this.spec = spec;
        this.aggs = spec.aggs.toArray(new Spec.Agg[0]);
        this.kinds = spec.kinds.toArray(new Spec.Kind[0]);
    }

    public History newHistory() {
        return new History(kinds, 8);
    }

    public Spec.Kind[] kinds() {
        return kinds;
    }

    private static double num(History h, int c, int i) {
        return h.kinds[c] == Spec.Kind.LONG ? (double) ((long[]) h.cols[c])[i] : ((double[]) h.cols[c])[i];
    }

    private static double num(Object v) {
        return ((Number) v).doubleValue();
    }

    /** Inserts the event and returns its aggregation values, in spec order (null where none). */
    @SuppressWarnings("unchecked")
    public Object[] update(History h, long t, String eid, Object[] vals) {
        final int na = aggs.length;
        final int pos = h.insertionPoint(t, eid);
        final long[] cnt = new long[na];
        final double[] acc = new double[na]; // sum, or min / max
        final int[] lo = new int[na]; // lowest index in the window (std's second pass)
        final boolean[] seen = new boolean[na];
        final HashSet<Object>[] sets = new HashSet[na];
        final Object[] out = new Object[na];

        for (int a = 0; a < na; a++) {
            Spec.Agg g = aggs[a];
            lo[a] = pos;
            Object cur = g.column >= 0 ? vals[g.column] : null;
            switch (g.op) {
                case COUNT:
                    cnt[a] = g.prior ? 0 : 1;
                    break;
                case SUM: case MEAN: case STD_POP:
                    if (!g.prior && cur != null) {
                        cnt[a] = 1;
                        acc[a] = num(cur);
                    }
                    break;
                case MIN: case MAX:
                    if (!g.prior && cur != null) {
                        cnt[a] = 1;
                        acc[a] = num(cur);
                    }
                    break;
                case DISTINCT_COUNT:
                    sets[a] = new HashSet<>();
                    if (!g.prior && cur != null) {
                        sets[a].add(cur);
                    }
                    break;
                default:
                    break;
            }
        }

        final long maxW = spec.maxWindowMs;
        for (int i = pos - 1; i >= 0; i--) {
            final long age = t - h.time[i];
            if (age >= maxW) {
                break;
            }
            for (int a = 0; a < na; a++) {
                Spec.Agg g = aggs[a];
                if (age >= g.windowMs || g.op == Spec.Op.LAST) {
                    continue;
                }
                int c = g.column;
                if (g.op == Spec.Op.COUNT) {
                    cnt[a]++;
                    continue;
                }
                if (h.nulls[c][i]) {
                    continue;
                }
                switch (g.op) {
                    case SUM: case MEAN: case STD_POP:
                        cnt[a]++;
                        acc[a] += num(h, c, i);
                        lo[a] = i;
                        break;
                    case MIN: {
                        double x = num(h, c, i);
                        acc[a] = cnt[a]++ == 0 ? x : Math.min(acc[a], x);
                        break;
                    }
                    case MAX: {
                        double x = num(h, c, i);
                        acc[a] = cnt[a]++ == 0 ? x : Math.max(acc[a], x);
                        break;
                    }
                    case DISTINCT_COUNT:
                        sets[a].add(h.get(c, i));
                        break;
                    case FIRST_SEEN:
                        if (!seen[a] && vals[c] != null && Objects.equals(h.get(c, i), vals[c])) {
                            seen[a] = true;
                        }
                        break;
                    default:
                        break;
                }
            }
        }

        // the previous event: in the history, or the newest ever seen (kept past trimming) if before e
        int prevIdx = pos > 0 ? pos - 1 : -1;
        boolean prevIsLast = prevIdx < 0 && h.hasLast
                && (h.lastTime < t || (h.lastTime == t && History.compareIds(h.lastId, eid) < 0));

        for (int a = 0; a < na; a++) {
            Spec.Agg g = aggs[a];
            Object cur = g.column >= 0 ? vals[g.column] : null;
            switch (g.op) {
                case COUNT:
                    out[a] = cnt[a] < g.minCount ? null : cnt[a];
                    break;
                case SUM:
                    out[a] = cnt[a] < g.minCount ? null : acc[a];
                    break;
                case MEAN:
                    out[a] = cnt[a] < Math.max(1, g.minCount) ? null : acc[a] / cnt[a];
                    break;
                case STD_POP:
                    out[a] = cnt[a] < Math.max(1, g.minCount) ? null : std(h, g, lo[a], pos, cur, acc[a] / cnt[a]);
                    break;
                case MIN: case MAX:
                    if (cnt[a] < Math.max(1, g.minCount)) {
                        out[a] = null;
                    } else {
                        out[a] = kinds[g.column] == Spec.Kind.LONG ? (Object) (long) acc[a] : (Object) acc[a];
                    }
                    break;
                case DISTINCT_COUNT:
                    out[a] = (long) sets[a].size() < g.minCount ? null : (long) sets[a].size();
                    break;
                case FIRST_SEEN:
                    out[a] = cur == null ? null : !seen[a];
                    break;
                case LAST:
                    out[a] = prevIdx >= 0 ? h.get(g.column, prevIdx) : prevIsLast ? h.lastVals[g.column] : null;
                    break;
                default:
                    throw new IllegalStateException("op " + g.op);
            }
        }

        h.insert(pos, t, eid, vals);
        if (!h.hasLast || h.lastTime < t || (h.lastTime == t && History.compareIds(h.lastId, eid) < 0)) {
            h.hasLast = true;
            h.lastTime = t;
            h.lastId = eid;
            System.arraycopy(vals, 0, h.lastVals, 0, vals.length);
        }
        h.trim(h.lastTime - spec.retentionMs);
        return out;
    }

    /** Population std of the window [lo, pos) (+ the current value, if included): see the class doc. */
    private static double std(History h, Spec.Agg g, int lo, int pos, Object cur, double mean) {
        int c = g.column;
        boolean withCur = !g.prior && cur != null;
        double first = Double.NaN;
        boolean haveFirst = false, allEqual = true;
        long n = 0;
        for (int i = lo; i < pos; i++) {
            if (h.nulls[c][i]) {
                continue;
            }
            double x = num(h, c, i);
            if (!haveFirst) {
                first = x;
                haveFirst = true;
            } else if (x != first) {
                allEqual = false;
            }
            n++;
        }
        if (withCur) {
            double x = num(cur);
            if (!haveFirst) {
                first = x;
                haveFirst = true;
            } else if (x != first) {
                allEqual = false;
            }
            n++;
        }
        if (allEqual) {
            return 0.0;
        }
        double sq = 0.0;
        for (int i = lo; i < pos; i++) {
            if (!h.nulls[c][i]) {
                double d = num(h, c, i) - mean;
                sq += d * d;
            }
        }
        if (withCur) {
            double d = num(cur) - mean;
            sq += d * d;
        }
        return Math.sqrt(sq / n);
    }
}
