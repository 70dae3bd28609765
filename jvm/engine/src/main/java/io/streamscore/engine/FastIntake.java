package io.streamscore.engine;

import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import java.util.Map;

/**
 * Kafka records (payload, topic, partition, offset) or typed Parquet rows -> event rows (contract fields,
 * ingest_ms, src_partition, src_offset, then the payload and the topic for a dead letter) for the records {@link Intake} is certain of; every
 * other record leaves unchanged on {@code uncertain}, for the Python intake. Kafka records at or past a
 * restored bounded run's stop offsets are not part of the run: dropped, uncounted, as before.
 */
final class FastIntake extends ProcessFunction<Row, Row> {
    private static final long serialVersionUID = 1L;

    private final Intake intake;
    private final boolean kafka;
    private final int[] typedIdx; // typed rows: the input column of each contract field, -1 if absent
    private final int rawIdx; // typed rows: the verbatim payload column, -1 if absent
    private final Map<Integer, Long> stopOffsets; // null: no bound
    private final OutputTag<Row> uncertain;

    FastIntake(Intake intake, boolean kafka, int[] typedIdx, int rawIdx, Map<Integer, Long> stopOffsets,
               OutputTag<Row> uncertain) {
        this.intake = intake;
        this.kafka = kafka;
        this.typedIdx = typedIdx;
        this.rawIdx = rawIdx;
        this.stopOffsets = stopOffsets;
        this.uncertain = uncertain;
    }

    @Override
    public void processElement(Row in, Context ctx, Collector<Row> out) {
        long ingest = System.currentTimeMillis();
        Object[] ev;
        Object payload = null;
        Integer partition = null;
        Long offset = null;
        if (kafka) {
            partition = (Integer) in.getField(2);
            offset = (Long) in.getField(3);
            if (stopOffsets != null && offset != null && offset >= stopOffsets.getOrDefault(partition, 0L)) {
                return;
            }
            payload = in.getField(0);
            ev = intake.payload((byte[]) payload);
        } else if (rawIdx >= 0 && in.getField(rawIdx) != null) {
            ev = null;
        } else {
            Object[] vals = new Object[typedIdx.length];
            for (int i = 0; i < vals.length; i++) {
                vals[i] = typedIdx[i] < 0 ? null : in.getField(typedIdx[i]);
            }
            ev = intake.typed(vals);
        }
        if (ev == null) {
            ctx.output(uncertain, in);
            return;
        }
        Row o = new Row(ev.length + 5);
        for (int i = 0; i < ev.length; i++) {
            o.setField(i, ev[i]);
        }
        o.setField(ev.length, ingest);
        o.setField(ev.length + 1, partition);
        o.setField(ev.length + 2, offset);
        o.setField(ev.length + 3, payload);
        o.setField(ev.length + 4, kafka ? in.getField(1) : null);
        out.collect(o);
    }
}
