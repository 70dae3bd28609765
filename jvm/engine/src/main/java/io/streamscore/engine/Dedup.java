package io.streamscore.engine;

import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Keyed by event_id: one copy of each event goes on (the rules of features/dedup.py, {@link DedupRules}).
 * A copy leaves on {@code duplicates}: its row with the reason and the detail appended.
 *
 * <p>Streaming: the first copy's (event_time, fingerprint) in checkpointed state, cleared by an event-time
 * timer at event_time + horizon, so the state is bounded by event time. BATCH: a key's records arrive
 * together; they wait in memory for the key's end-of-input timer and are resolved independently of row
 * order (a fingerprint is computed only for ids with more than one record).
 */
final class Dedup extends KeyedProcessFunction<String, Row, Row> {
    private static final long serialVersionUID = 1L;
    static final long END_OF_KEY = Long.MAX_VALUE - 1; // a BATCH timer that fires once the key's input is exhausted
    private static final long MAX_TIMER = Long.MAX_VALUE - 2; // below it: a huge horizon must not overflow

    private final int timeIdx;
    private final int[] contentIdx;
    private final long horizon;
    private final boolean batch;
    private final OutputTag<Row> duplicates;
    private final String countsDir;

    private transient ValueState<Long> firstTime;
    private transient ValueState<byte[]> firstFp;
    private transient Map<String, List<Row>> keyBuffer;
    private transient Counter dropped;
    private transient RunCounts counts;

    Dedup(int timeIdx, int[] contentIdx, long horizonMs, boolean batch, OutputTag<Row> duplicates, String countsDir) {
        if (horizonMs <= 0) {
            throw new IllegalArgumentException("the dedup horizon must be > 0 (leave the operator out to turn it off)");
        }
        this.timeIdx = timeIdx;
        this.contentIdx = contentIdx;
        this.horizon = horizonMs;
        this.batch = batch;
        this.duplicates = duplicates;
        this.countsDir = countsDir;
    }

    @Override
    public void open(org.apache.flink.api.common.functions.OpenContext ctx) {
        firstTime = getRuntimeContext().getState(new ValueStateDescriptor<>("first_time", Types.LONG));
        firstFp = getRuntimeContext().getState(
                new ValueStateDescriptor<>("first_fingerprint",
                        org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
        keyBuffer = new HashMap<>();
        dropped = getRuntimeContext().getMetricGroup().counter("eventsDuplicate");
        counts = new RunCounts(countsDir, "dedup");
    }

    @Override
    public void close() throws Exception {
        counts.close();
    }

    private byte[] fingerprint(Row r) {
        Object[] vals = new Object[contentIdx.length];
        for (int i = 0; i < vals.length; i++) {
            vals[i] = r.getField(contentIdx[i]);
        }
        return Fingerprint.of(vals);
    }

    private static long timerFor(long t, long horizon) {
        return t > MAX_TIMER - horizon ? MAX_TIMER : t + horizon;
    }

    @Override
    public void processElement(Row row, Context ctx, Collector<Row> out) throws Exception {
        if (batch) {
            List<Row> pending = keyBuffer.get(ctx.getCurrentKey());
            if (pending == null) {
                pending = new ArrayList<>(1);
                keyBuffer.put(ctx.getCurrentKey(), pending);
                ctx.timerService().registerEventTimeTimer(END_OF_KEY);
            }
            pending.add(row);
            return;
        }
        long t = (Long) row.getField(timeIdx);
        byte[] fp = fingerprint(row);
        Long t0 = firstTime.value();
        if (t0 != null) {
            if (DedupRules.isCopy(t0, t, horizon)) {
                reject(ctx, row, DedupRules.verdict(t0, firstFp.value(), t, fp));
                return;
            }
            if (t < t0) { // an older, distinct use of the id: the newer one stays remembered
                out.collect(row);
                return;
            }
        }
        firstTime.update(t);
        firstFp.update(fp);
        ctx.timerService().registerEventTimeTimer(timerFor(t, horizon));
        out.collect(row);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        if (batch) {
            List<Row> pending = keyBuffer.remove(ctx.getCurrentKey());
            if (pending == null) {
                return;
            }
            if (pending.size() == 1) {
                out.collect(pending.get(0));
                return;
            }
            long[] times = new long[pending.size()];
            byte[][] fps = new byte[pending.size()][];
            for (int i = 0; i < times.length; i++) {
                times[i] = (Long) pending.get(i).getField(timeIdx);
                fps[i] = fingerprint(pending.get(i));
            }
            List<String[]> outcomes = DedupRules.resolve(times, fps, horizon);
            for (int i = 0; i < times.length; i++) {
                if (outcomes.get(i) == null) {
                    out.collect(pending.get(i));
                } else {
                    reject(ctx, pending.get(i), outcomes.get(i));
                }
            }
            return;
        }
        Long t0 = firstTime.value();
        // an earlier use's timer must not clear the state of a later, distinct use of the id
        if (t0 != null && timerFor(t0, horizon) <= timestamp) {
            firstTime.clear();
            firstFp.clear();
        }
    }

    private void reject(Context ctx, Row row, String[] verdict) {
        dropped.inc();
        counts.inc(verdict[0]);
        int n = row.getArity();
        Row o = new Row(row.getKind(), n + 2);
        for (int i = 0; i < n; i++) {
            o.setField(i, row.getField(i));
        }
        o.setField(n, verdict[0]);
        o.setField(n + 1, verdict[1]);
        ctx.output(duplicates, o);
    }
}
