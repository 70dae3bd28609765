package io.streamscore.engine;

import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.typeutils.ListTypeInfo;
import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import java.util.ArrayList;
import java.util.List;

/**
 * Per key: the history in checkpointed state, fed to the {@link Aggregator}; emits the input row
 * followed by the aggregation values. Orderings: "arrival" scores each event as it arrives over the
 * events already in state; "event-time" holds events until the watermark passes time + allowed
 * lateness and scores them in (time, id) order (in BATCH mode, at the end of each key: the backfill).
 * An event at or behind the watermark by more than the allowed lateness leaves on {@code late}: its row
 * and, appended, the watermark it was behind.
 */
public final class DeclaredFeatures extends KeyedProcessFunction<String, Row, Row> {
    private static final long serialVersionUID = 1L;

    private final Aggregator aggregator;
    private final int timeIdx, idIdx;
    private final int[] colIdx;
    private final boolean eventTimeOrder;
    private final long lateness;
    private final TypeInformation<Row> inType;
    private final OutputTag<Row> late;

    private transient ValueState<History> history;
    private transient MapState<Long, List<Row>> pending;
    private final String countsDir;
    private transient Counter emitted, lateCount;
    private transient long rowsEmitted, rowsLate;

    DeclaredFeatures(Spec spec, int timeIdx, int idIdx, int[] colIdx, String ordering, long lateness,
                     TypeInformation<Row> inType, OutputTag<Row> late, String countsDir) {
        if (!ordering.equals("arrival") && !ordering.equals("event-time")) {
            throw new IllegalArgumentException("ordering must be arrival or event-time, got " + ordering);
        }
        if (lateness < 0) {
            throw new IllegalArgumentException("allowed lateness must be >= 0");
        }
        this.aggregator = new Aggregator(spec);
        this.timeIdx = timeIdx;
        this.idIdx = idIdx;
        this.colIdx = colIdx;
        this.eventTimeOrder = ordering.equals("event-time");
        this.lateness = lateness;
        this.inType = inType;
        this.late = late;
        this.countsDir = countsDir == null || countsDir.isEmpty() ? null : countsDir;
    }

    @Override
    public void open(org.apache.flink.api.common.functions.OpenContext ctx) {
        history = getRuntimeContext().getState(new ValueStateDescriptor<>("history", HistorySerializer.INSTANCE));
        if (eventTimeOrder) {
            pending = getRuntimeContext().getMapState(
                    new MapStateDescriptor<>("pending", Types.LONG, new ListTypeInfo<>(inType)));
        }
        emitted = getRuntimeContext().getMetricGroup().counter("featureRowsEmitted");
        lateCount = getRuntimeContext().getMetricGroup().counter("eventsLate");
    }

    /** End-of-run counts (see {@link RunCounts}). */
    @Override
    public void close() throws Exception {
        RunCounts counts = new RunCounts(countsDir, "features");
        counts.add("feature_rows", rowsEmitted);
        counts.add("late", rowsLate);
        counts.close();
        rowsEmitted = rowsLate = 0;
    }

    @Override
    public void processElement(Row row, Context ctx, Collector<Row> out) throws Exception {
        long t = (Long) row.getField(timeIdx);
        long wm = ctx.timerService().currentWatermark();
        if (wm != Long.MIN_VALUE && t + lateness <= wm) {
            lateCount.inc();
            rowsLate++;
            // the input row and the watermark it was behind, for the late record's detail
            Row o = new Row(row.getKind(), row.getArity() + 1);
            for (int i = 0; i < row.getArity(); i++) {
                o.setField(i, row.getField(i));
            }
            o.setField(row.getArity(), wm);
            ctx.output(late, o);
            return;
        }
        if (!eventTimeOrder) {
            History h = history.value();
            if (h == null) {
                h = aggregator.newHistory();
            }
            out.collect(score(h, row));
            history.update(h);
            return;
        }
        List<Row> waiting = pending.get(t);
        if (waiting == null) {
            waiting = new ArrayList<>(1);
            ctx.timerService().registerEventTimeTimer(t + lateness);
        }
        waiting.add(row);
        pending.put(t, waiting);
    }

    @Override
    public void onTimer(long timestamp, OnTimerContext ctx, Collector<Row> out) throws Exception {
        long t = timestamp - lateness;
        List<Row> waiting = pending.get(t);
        if (waiting == null || waiting.isEmpty()) {
            return;
        }
        pending.remove(t);
        waiting.sort((x, y) -> History.compareIds((String) x.getField(idIdx), (String) y.getField(idIdx)));
        History h = history.value();
        if (h == null) {
            h = aggregator.newHistory();
        }
        for (Row r : waiting) {
            out.collect(score(h, r));
        }
        history.update(h);
    }

    private Row score(History h, Row row) {
        Object[] vals = new Object[colIdx.length];
        for (int c = 0; c < colIdx.length; c++) {
            vals[c] = row.getField(colIdx[c]);
        }
        Object[] feats = aggregator.update(h, (Long) row.getField(timeIdx), (String) row.getField(idIdx), vals);
        int n = row.getArity();
        Row o = new Row(row.getKind(), n + feats.length);
        for (int i = 0; i < n; i++) {
            o.setField(i, row.getField(i));
        }
        for (int a = 0; a < feats.length; a++) {
            o.setField(n + a, feats[a]);
        }
        emitted.inc();
        rowsEmitted++;
        return o;
    }
}
