package io.streamscore.engine;

import java.util.Arrays;

/**
 * One key's events of the last retention span, sorted by (time, id), as columns; plus the newest
 * event ever seen ({@code last*}), which survives trimming so "previous event" works after a long silence.
 * Entries live in [0, size). Mutated in place by {@link Aggregator}; copied deeply by its serializer.
 */
public final class History {
    final Spec.Kind[] kinds;
    int size;
    long[] time;
    String[] id;
    final Object[] cols; // long[] | double[] | String[] | boolean[] per column
    final boolean[][] nulls;

    boolean hasLast;
    long lastTime;
    String lastId;
    final Object[] lastVals;

    public History(Spec.Kind[] kinds, int capacity) {
        this.kinds = kinds;
        int cap = Math.max(capacity, 4);
        time = new long[cap];
        id = new String[cap];
        cols = new Object[kinds.length];
        nulls = new boolean[kinds.length][];
        for (int c = 0; c < kinds.length; c++) {
            cols[c] = newColumn(kinds[c], cap);
            nulls[c] = new boolean[cap];
        }
        lastVals = new Object[kinds.length];
    }

    static Object newColumn(Spec.Kind k, int cap) {
        switch (k) {
            case LONG: return new long[cap];
            case DOUBLE: return new double[cap];
            case BOOLEAN: return new boolean[cap];
            default: return new String[cap];
        }
    }

    /**
     * Ids in Unicode code-point order, as Python compares strings (String.compareTo compares UTF-16
     * units, which puts U+E000..U+FFFF after supplementary characters).
     */
    static int compareIds(String a, String b) {
        int n = Math.min(a.length(), b.length());
        for (int i = 0; i < n; i++) {
            char x = a.charAt(i), y = b.charAt(i);
            if (x != y) {
                if (x >= 0xD800 && y >= 0xD800) {
                    x = (char) (x >= 0xE000 ? x - 0x800 : x + 0x2000);
                    y = (char) (y >= 0xE000 ? y - 0x800 : y + 0x2000);
                }
                return x - y;
            }
        }
        return a.length() - b.length();
    }

    int capacity() {
        return time.length;
    }

    /** The position (time, id) would take: the first entry not before it. */
    int insertionPoint(long t, String eid) {
        int lo = 0, hi = size;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            long mt = time[mid];
            if (mt < t || (mt == t && compareIds(id[mid], eid) < 0)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    void insert(int pos, long t, String eid, Object[] vals) {
        if (size == capacity()) {
            grow(size * 2);
        }
        int tail = size - pos;
        if (tail > 0) {
            System.arraycopy(time, pos, time, pos + 1, tail);
            System.arraycopy(id, pos, id, pos + 1, tail);
            for (int c = 0; c < kinds.length; c++) {
                System.arraycopy(cols[c], pos, cols[c], pos + 1, tail);
                System.arraycopy(nulls[c], pos, nulls[c], pos + 1, tail);
            }
        }
        time[pos] = t;
        id[pos] = eid;
        for (int c = 0; c < kinds.length; c++) {
            set(c, pos, vals[c]);
        }
        size++;
    }

    void set(int c, int i, Object v) {
        nulls[c][i] = v == null;
        switch (kinds[c]) {
            case LONG: ((long[]) cols[c])[i] = v == null ? 0L : ((Number) v).longValue(); break;
            case DOUBLE: ((double[]) cols[c])[i] = v == null ? 0.0 : ((Number) v).doubleValue(); break;
            case BOOLEAN: ((boolean[]) cols[c])[i] = v != null && (Boolean) v; break;
            default: ((String[]) cols[c])[i] = (String) v;
        }
    }

    Object get(int c, int i) {
        if (nulls[c][i]) {
            return null;
        }
        switch (kinds[c]) {
            case LONG: return ((long[]) cols[c])[i];
            case DOUBLE: return ((double[]) cols[c])[i];
            case BOOLEAN: return ((boolean[]) cols[c])[i];
            default: return ((String[]) cols[c])[i];
        }
    }

    /** Forget entries at or before {@code horizon}: no window reaches them any more. */
    void trim(long horizon) {
        if (size == 0 || time[0] > horizon) {
            return;
        }
        int cut = 0;
        while (cut < size && time[cut] <= horizon) {
            cut++;
        }
        int keep = size - cut;
        System.arraycopy(time, cut, time, 0, keep);
        System.arraycopy(id, cut, id, 0, keep);
        Arrays.fill(id, keep, size, null);
        for (int c = 0; c < kinds.length; c++) {
            System.arraycopy(cols[c], cut, cols[c], 0, keep);
            System.arraycopy(nulls[c], cut, nulls[c], 0, keep);
            if (kinds[c] == Spec.Kind.STRING) {
                Arrays.fill((String[]) cols[c], keep, size, null);
            }
        }
        size = keep;
    }

    void grow(int cap) {
        cap = Math.max(cap, 4);
        time = Arrays.copyOf(time, cap);
        id = Arrays.copyOf(id, cap);
        for (int c = 0; c < kinds.length; c++) {
            switch (kinds[c]) {
                case LONG: cols[c] = Arrays.copyOf((long[]) cols[c], cap); break;
                case DOUBLE: cols[c] = Arrays.copyOf((double[]) cols[c], cap); break;
                case BOOLEAN: cols[c] = Arrays.copyOf((boolean[]) cols[c], cap); break;
                default: cols[c] = Arrays.copyOf((String[]) cols[c], cap);
            }
            nulls[c] = Arrays.copyOf(nulls[c], cap);
        }
    }
}
