package io.streamscore.engine;

import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.api.java.typeutils.ListTypeInfo;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;

/**
 * Keyed by (machine_id, sensor_id): incidents, alerts with a cool-down, and maintenance tickets, by the
 * rules of features/alerts.py (its module docstring is the contract).
 *
 * <p>Exact whatever the arrival order within the watermark's bound: a reading waits in checkpointed state
 * ({@code pending}, by event time) for an event-time timer at its time; timers fire in time order, so the
 * readings are handled in (event_time, event_id) order once nothing earlier can arrive. A close is a timer
 * at the incident's end (last anomalous + quiet); a stale one (the incident went on) does nothing. At the
 * final watermark (end of input; every timer of a BATCH key fires then, and BATCH ignores timers set from
 * a timer) the first timer of a key handles all its buffered readings in order and closes the incident.
 * A reading at or behind the watermark on arrival can no longer be put in order: it leaves on {@code late}
 * (its fields and the watermark). Everything lives in keyed state, none in fields, so a restore continues.
 */
final class Incidents extends KeyedProcessFunction<Tuple2<String, String>, Row, Row> {
    private static final long serialVersionUID = 1L;

    /** What a buffered reading keeps (its time is the map key; machine and sensor are the key). */
    static final RowTypeInfo READING = new RowTypeInfo(
            new TypeInformation<?>[]{Types.STRING, Types.DOUBLE, Types.BOOLEAN, Types.STRING, Types.STRING},
            new String[]{"event_id", "score", "is_anomalous", "reasons", "model_version"});
    // the open incident of a key
    private static final int HEX = 0, START = 1, LAST = 2, LAST_ALERT = 3, N_ANOM = 4, N_ALERTS = 5, MAX_SCORE = 6,
            NORMAL_AFTER = 7, TICKET = 8, MODEL = 9;
    static final RowTypeInfo INCIDENT = new RowTypeInfo(
            new TypeInformation<?>[]{Types.STRING, Types.LONG, Types.LONG, Types.LONG, Types.LONG, Types.LONG,
                    Types.DOUBLE, Types.LONG, Types.BOOLEAN, Types.STRING},
            new String[]{"hex", "start", "last", "last_alert", "n_anomalous", "n_alerts", "max_score",
                    "normal_after", "ticket", "model_version"});
    private static final Comparator<Row> BY_ID =
            (a, b) -> History.compareIds((String) a.getField(0), (String) b.getField(0));

    private final int idIdx, timeIdx, scoreIdx, anomIdx, reasonsIdx, modelIdx;
    private final long minDuration, cooldown, quiet;
    private final OutputTag<Row> tickets, late;
    private final String countsDir;

    private transient MapState<Long, List<Row>> pending;
    private transient ValueState<Row> incident;
    private transient Counter alertCount, ticketCount, lateCount;
    private transient RunCounts counts;

    /** {@code idx}: positions of event_id, event_time, score, is_anomalous, reasons, model_version. */
    Incidents(int[] idx, long minDurationMs, long cooldownMs, long quietMs, OutputTag<Row> tickets,
              OutputTag<Row> late, String countsDir) {
        if (minDurationMs < 0 || cooldownMs < 0 || quietMs < 1) {
            throw new IllegalArgumentException("min_duration_ms and cooldown_ms must be >= 0, quiet_ms >= 1");
        }
        this.idIdx = idx[0];
        this.timeIdx = idx[1];
        this.scoreIdx = idx[2];
        this.anomIdx = idx[3];
        this.reasonsIdx = idx[4];
        this.modelIdx = idx[5];
        this.minDuration = minDurationMs;
        this.cooldown = cooldownMs;
        this.quiet = quietMs;
        this.tickets = tickets;
        this.late = late;
        this.countsDir = countsDir;
    }

    @Override
    public void open(org.apache.flink.api.common.functions.OpenContext ctx) {
        pending = getRuntimeContext().getMapState(
                new MapStateDescriptor<>("pending", Types.LONG, new ListTypeInfo<>(READING)));
        incident = getRuntimeContext().getState(new ValueStateDescriptor<>("incident", INCIDENT));
        alertCount = getRuntimeContext().getMetricGroup().counter("alertsRaised");
        ticketCount = getRuntimeContext().getMetricGroup().counter("ticketEvents");
        lateCount = getRuntimeContext().getMetricGroup().counter("readingsLate");
        counts = new RunCounts(countsDir, "alerts");
    }

    @Override
    public void close() throws Exception {
        counts.close();
    }

    private static long plus(long a, long b) { // saturating: a time near Long.MAX_VALUE must not wrap
        long s = a + b;
        return ((a ^ s) & (b ^ s)) < 0 ? Long.MAX_VALUE : s;
    }

    @Override
    public void processElement(Row row, Context ctx, Collector<Row> out) throws Exception {
        long t = ((Number) row.getField(timeIdx)).longValue();
        Object score = row.getField(scoreIdx);
        Row r = Row.of(row.getField(idIdx), score == null ? null : ((Number) score).doubleValue(),
                row.getField(anomIdx), row.getField(reasonsIdx), row.getField(modelIdx));
        long wm = ctx.timerService().currentWatermark();
        if (wm != Long.MIN_VALUE && t <= wm) {
            lateCount.inc();
            counts.inc("late");
            Tuple2<String, String> k = ctx.getCurrentKey();
            ctx.output(late, Row.of(r.getField(0), k.f0, k.f1, t, r.getField(1), r.getField(2), r.getField(3),
                    r.getField(4), wm));
            return;
        }
        List<Row> waiting = pending.get(t);
        if (waiting == null) {
            waiting = new ArrayList<>(1);
            ctx.timerService().registerEventTimeTimer(t);
        }
        waiting.add(r);
        pending.put(t, waiting);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        Row inc = incident.value();
        Row before = inc;
        boolean final_ = ctx.timerService().currentWatermark() == Long.MAX_VALUE;
        if (final_) {
            if (pending.isEmpty() && inc == null) {
                return;
            }
            List<Long> times = new ArrayList<>();
            for (Long t : pending.keys()) {
                times.add(t);
            }
            times.sort(null);
            for (long t : times) {
                List<Row> rs = pending.get(t);
                rs.sort(BY_ID);
                counts.add("end_of_input_readings", rs.size());
                for (Row r : rs) {
                    inc = reading(ctx, out, inc, t, r, true);
                }
            }
            pending.clear();
            inc = advance(ctx, inc, Long.MAX_VALUE);
        } else {
            List<Row> rs = pending.get(timestamp);
            if (rs != null) {
                pending.remove(timestamp);
                rs.sort(BY_ID);
                for (Row r : rs) {
                    inc = reading(ctx, out, inc, timestamp, r, false);
                }
            }
            inc = advance(ctx, inc, timestamp);
        }
        if (inc == null) {
            if (before != null) {
                incident.clear();
            }
        } else {
            incident.update(inc);
        }
    }

    /** Event time reached {@code t}: the incident closes if its end is not after it (null: closed). */
    private Row advance(Context ctx, Row inc, long t) {
        if (inc == null) {
            return null;
        }
        long end = plus((Long) inc.getField(LAST), quiet);
        if (end > t) {
            return inc;
        }
        if ((Boolean) inc.getField(TICKET)) {
            ticket(ctx, inc, "closed", end);
        }
        return null;
    }

    private Row reading(OnTimerContext ctx, Collector<Row> out, Row inc, long t, Row r, boolean final_) {
        inc = advance(ctx, inc, t); // close first: t >= end
        Boolean anomalous = (Boolean) r.getField(2);
        if (anomalous == null || !anomalous) {
            if (inc != null) {
                inc.setField(NORMAL_AFTER, (Long) inc.getField(NORMAL_AFTER) + 1);
            }
            return inc;
        }
        String eid = (String) r.getField(0);
        Double score = (Double) r.getField(1);
        boolean alert;
        if (inc == null) {
            Tuple2<String, String> k = ctx.getCurrentKey();
            String hex = Fingerprint.hex(Fingerprint.of(new Object[]{k.f0, k.f1, eid}), Fingerprint.BYTES);
            inc = Row.of(hex, t, t, t, 0L, 0L, null, 0L, false, r.getField(4));
            counts.inc("incidents");
            alert = true;
        } else {
            alert = t - (Long) inc.getField(LAST_ALERT) >= cooldown;
            long oldEnd = plus((Long) inc.getField(LAST), quiet);
            try { // the old close timer is stale; keep it where readings wait at that time
                if (!final_ && !pending.contains(oldEnd)) {
                    ctx.timerService().deleteEventTimeTimer(oldEnd);
                }
            } catch (Exception e) {
                throw new IllegalStateException("pending state unreadable", e);
            }
        }
        inc.setField(LAST, t);
        inc.setField(N_ANOM, (Long) inc.getField(N_ANOM) + 1);
        inc.setField(NORMAL_AFTER, 0L);
        Double max = (Double) inc.getField(MAX_SCORE);
        if (score != null && !score.isNaN() && (max == null || score > max)) {
            inc.setField(MAX_SCORE, score);
        }
        if (alert) {
            inc.setField(LAST_ALERT, t);
            long seq = (Long) inc.getField(N_ALERTS) + 1;
            inc.setField(N_ALERTS, seq);
            Tuple2<String, String> k = ctx.getCurrentKey();
            out.collect(Row.of(eid, "inc-" + inc.getField(HEX), k.f0, k.f1, t, score, r.getField(3), r.getField(4), seq));
            alertCount.inc();
            counts.inc("alerts");
        }
        if (!(Boolean) inc.getField(TICKET) && t - (Long) inc.getField(START) >= minDuration) {
            inc.setField(TICKET, true);
            ticket(ctx, inc, "open", t);
        }
        if (!final_) { // at the final watermark the caller closes what is left
            ctx.timerService().registerEventTimeTimer(plus(t, quiet));
        }
        return inc;
    }

    private void ticket(Context ctx, Row inc, String status, long t) {
        boolean closed = status.equals("closed");
        String hex = (String) inc.getField(HEX);
        Tuple2<String, String> k = ctx.getCurrentKey();
        String reason = closed ? ((Long) inc.getField(NORMAL_AFTER) > 0 ? "recovered" : "silent") : null;
        ctx.output(tickets, Row.of("tkt-" + hex, "inc-" + hex, k.f0, k.f1, status, t, inc.getField(START),
                inc.getField(LAST), closed ? t : null, inc.getField(N_ANOM), inc.getField(N_ALERTS),
                inc.getField(MAX_SCORE), reason, inc.getField(MODEL)));
        ticketCount.inc();
        counts.inc(closed ? "tickets_closed" : "tickets_opened");
    }
}
