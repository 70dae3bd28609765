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
 *   <li>ewma: newest to oldest, the newest value weighs 1.0, each older one the weight of the value
 *       before it times {@link #decay}(gap, half-life); num += w * x, den += w from 0.0; num / den;</li>
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

    // decay's constants: the same doubles as features/declare.py (LN2_NEG, EXP_COEFFS = 1/k!)
    private static final double LN2_NEG = -0.6931471805599453;
    private static final double[] EXP_COEFFS = {1.0, 1.0, 0.5, 0.16666666666666666, 0.041666666666666664,
        0.008333333333333333, 0.001388888888888889, 0.0001984126984126984, 2.48015873015873e-05,
        2.7557319223985893e-06, 2.755731922398589e-07, 2.505210838544172e-08, 2.08767569878681e-09,
        1.6059043836821613e-10};

    /**
     * 2^(-gap / halfLife), the operations of features.declare.decay_weight in the same order (Java
     * never fuses a multiply and an add; scalb to a normal double is exact): the same bits.
     */
    static double decay(long gap, long halfLife) {
        double y = (double) gap / (double) halfLife;
        if (!(y <= 1000.0)) {
            return 0.0;
        }
        double n = Math.floor(y + 0.5);
        double z = (y - n) * LN2_NEG;
        double p = EXP_COEFFS[13];
        for (int k = 12; k >= 0; k--) {
            p = p * z + EXP_COEFFS[k];
        }
        return Math.scalb(p, -(int) n);
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
        final double[] acc = new double[na]; // sum, or min / max, or ewma's numerator
        final double[] den = new double[na]; // ewma: sum of weights
        final double[] wt = new double[na]; // ewma: the weight of the newest value walked
        final long[] tPrev = new long[na]; // ewma: the time of that value
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
                case EWMA:
                    if (!g.prior && cur != null) {
                        cnt[a] = 1;
                        wt[a] = 1.0;
                        tPrev[a] = t;
                        acc[a] += 1.0 * num(cur);
                        den[a] += 1.0;
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
                    case EWMA: {
                        long ti = h.time[i];
                        double w = cnt[a]++ == 0 ? 1.0 : wt[a] * decay(tPrev[a] - ti, g.halfLifeMs);
                        wt[a] = w;
                        tPrev[a] = ti;
                        acc[a] += w * num(h, c, i);
                        den[a] += w;
                        break;
                    }
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
                case EWMA:
                    out[a] = cnt[a] < Math.max(1, g.minCount) ? null : acc[a] / den[a];
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
