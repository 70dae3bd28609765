package io.streamscore.engine;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

import org.apache.flink.api.common.eventtime.SerializableTimestampAssigner;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;

import java.time.Duration;
import java.util.Arrays;
import java.util.List;

/**
 * Entry points from PyFlink (through py4j), each a JVM stage of the feature graph (jobs/pipeline.py):
 * {@link #watermarks} (event-time timestamps and bounded out-of-orderness), {@link #dedup} (one copy of each
 * event_id) and {@link #features} (keys a stream of named Rows by the spec's key and appends the spec's
 * aggregations to every row). {@code countsDir} (null or empty: none) receives end-of-run counts.
 */
public final class Engine {
    private Engine() {}

    /** A stream and one side output of it (features + late rows, kept rows + duplicates, ...). */
    public static final class Split {
        private final SingleOutputStreamOperator<Row> main;
        private final OutputTag<Row> tag;

        Split(SingleOutputStreamOperator<Row> main, OutputTag<Row> tag) {
            this.main = main;
            this.tag = tag;
        }

        public SingleOutputStreamOperator<Row> main() { return main; }

        public DataStream<Row> side() { return main.getSideOutput(tag); }
    }

    /**
     * Intake's JVM path ({@link Intake}): records it is certain of become rows of {@code outType} (the
     * contract fields, ingest_ms, src_partition, src_offset, payload); the others leave unchanged on the
     * side output for the Python intake. {@code kafka}: input rows are (payload, topic, partition, offset);
     * else typed rows with the columns {@code inNames}. {@code stopOffsetsJson}: "[[partition, offset],
     * ...]" of a restored bounded run, or null.
     */
    public static Split intake(DataStream<Row> in, String[] inNames, RowTypeInfo outType, String specJson,
                               boolean kafka, int maxRecordBytes, String stopOffsetsJson, String uid) {
        Intake intake = new Intake(specJson, maxRecordBytes);
        List<String> names = Arrays.asList(inNames);
        int[] typed = new int[intake.fields.size()];
        for (int i = 0; i < typed.length; i++) {
            typed[i] = names.indexOf(intake.fields.get(i).name);
        }
        java.util.Map<Integer, Long> stop = null;
        if (stopOffsetsJson != null) {
            stop = new java.util.HashMap<>();
            try {
                for (org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode pair
                        : new org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper().readTree(stopOffsetsJson)) {
                    stop.put(pair.get(0).asInt(), pair.get(1).asLong());
                }
            } catch (java.io.IOException e) {
                throw new IllegalArgumentException("bad stop offsets " + stopOffsetsJson, e);
            }
        }
        OutputTag<Row> uncertain = new OutputTag<>(uid + "-uncertain", in.getType());
        SingleOutputStreamOperator<Row> out = in
                .process(new FastIntake(intake, kafka, typed, kafka ? -1 : names.indexOf("_raw"), stop, uncertain), outType)
                .name(uid)
                .uid(uid);
        return new Split(out, uncertain);
    }

    /**
     * The time guards ({@link TimeGuards}) over rows of {@code inType} (an event row of {@code width} fields
     * and a trailing payload): the event rows that pass, and on the side the refused rows with reason
     * and detail appended.
     */
    public static Split timeGuards(DataStream<Row> in, RowTypeInfo inType, int width, long maxFutureMs, long maxJumpMs,
                                   long maxPastMs, boolean streamGuards, String uid, String countsDir) {
        List<String> names = Arrays.asList(inType.getFieldNames());
        int n = names.size();
        String[] rejNames = Arrays.copyOf(inType.getFieldNames(), n + 2);
        TypeInformation<?>[] rejTypes = Arrays.copyOf(inType.getFieldTypes(), n + 2);
        rejNames[n] = "reason";
        rejNames[n + 1] = "detail";
        rejTypes[n] = rejTypes[n + 1] = Types.STRING;
        OutputTag<Row> tag = new OutputTag<>(uid + "-rejects", new RowTypeInfo(rejTypes, rejNames));
        RowTypeInfo outType = new RowTypeInfo(Arrays.copyOf(inType.getFieldTypes(), width),
                Arrays.copyOf(inType.getFieldNames(), width));
        SingleOutputStreamOperator<Row> out = in
                .process(new TimeGuards(index(names, "event_time", "time column"), index(names, "ingest_ms", "column"),
                        width, maxFutureMs, maxJumpMs, maxPastMs, streamGuards, tag, countsDir), outType)
                .name(uid)
                .uid(uid);
        return new Split(out, tag);
    }

    static final class FieldTime implements SerializableTimestampAssigner<Row> {
        private static final long serialVersionUID = 1L;
        private final int idx;

        FieldTime(int idx) { this.idx = idx; }

        @Override public long extractTimestamp(Row r, long recordTimestamp) { return (Long) r.getField(idx); }
    }

    /**
     * Timestamps from the row's {@code timeColumn} (epoch ms) and watermarks of bounded out-of-orderness
     * (watermark = newest time - maxDisorderMs - 1); an input idle for {@code idlenessMs} (> 0) stops holding
     * the watermark back. Placed after parsing, so a refused timestamp never reaches the generator.
     */
    public static SingleOutputStreamOperator<Row> watermarks(DataStream<Row> in, RowTypeInfo inType, String timeColumn,
                                                             long maxDisorderMs, long idlenessMs, String uid) {
        if (maxDisorderMs < 0 || idlenessMs < 0) {
            throw new IllegalArgumentException("max out-of-orderness and idleness must be >= 0");
        }
        int t = index(Arrays.asList(inType.getFieldNames()), timeColumn, "time column");
        WatermarkStrategy<Row> strategy = WatermarkStrategy.<Row>forBoundedOutOfOrderness(Duration.ofMillis(maxDisorderMs))
                .withTimestampAssigner(new FieldTime(t));
        if (idlenessMs > 0) {
            strategy = strategy.withIdleness(Duration.ofMillis(idlenessMs));
        }
        return in.assignTimestampsAndWatermarks(strategy).name(uid).uid(uid);
    }

    /**
     * Keyed by {@code idColumn}: the first copy of an event within {@code horizonMs} of event time goes on,
     * the others leave on the duplicates output (rules: features/dedup.py). {@code contentColumns}: what
     * makes up an event's content (its fingerprint); lineage columns are not content.
     */
    public static Split dedup(DataStream<Row> in, RowTypeInfo inType, String idColumn, String timeColumn,
                                     String[] contentColumns, long horizonMs, boolean batch, String uid,
                                     String countsDir) {
        List<String> names = Arrays.asList(inType.getFieldNames());
        int[] content = new int[contentColumns.length];
        for (int i = 0; i < content.length; i++) {
            content[i] = index(names, contentColumns[i], "content column");
        }
        int n = names.size();
        String[] dupNames = Arrays.copyOf(inType.getFieldNames(), n + 2);
        TypeInformation<?>[] dupTypes = Arrays.copyOf(inType.getFieldTypes(), n + 2);
        dupNames[n] = "reason";
        dupNames[n + 1] = "detail";
        dupTypes[n] = dupTypes[n + 1] = Types.STRING;
        OutputTag<Row> tag = new OutputTag<>(uid + "-duplicates", new RowTypeInfo(dupTypes, dupNames));
        SingleOutputStreamOperator<Row> kept = in
                .keyBy(new FieldKey(index(names, idColumn, "id column")), Types.STRING)
                .process(new Dedup(index(names, timeColumn, "time column"), content, horizonMs, batch, tag, countsDir),
                        inType)
                .name(uid)
                .uid(uid);
        return new Split(kept, tag);
    }

    static final class FieldKey implements KeySelector<Row, String> {
        private static final long serialVersionUID = 1L;
        private final int idx;

        FieldKey(int idx) { this.idx = idx; }

        @Override public String getKey(Row r) { return (String) r.getField(idx); }
    }

    /**
     * A composite key as one String: each field as its length, ':' and its characters. No two different
     * tuples give the same string (the lengths delimit the fields), and the key stays a String, so the
     * operator's state layout is the same as for a one-field key.
     */
    static final class CompositeKey implements KeySelector<Row, String> {
        private static final long serialVersionUID = 1L;
        private final int[] idx;

        CompositeKey(int[] idx) { this.idx = idx; }

        @Override
        public String getKey(Row r) {
            StringBuilder b = new StringBuilder();
            for (int i : idx) {
                String v = (String) r.getField(i);
                b.append(v.length()).append(':').append(v);
            }
            return b.toString();
        }
    }

    /** One key column: the field itself (the layout fraud jobs were checkpointed with); more: CompositeKey. */
    static KeySelector<Row, String> keySelector(List<String> names, List<String> keys) {
        if (keys.size() == 1) {
            return new FieldKey(index(names, keys.get(0), "key"));
        }
        int[] idx = new int[keys.size()];
        for (int k = 0; k < idx.length; k++) {
            idx[k] = index(names, keys.get(k), "key");
        }
        return new CompositeKey(idx);
    }

    private static TypeInformation<?> typeOf(Spec.Kind k) {
        switch (k) {
            case LONG: return Types.LONG;
            case DOUBLE: return Types.DOUBLE;
            case BOOLEAN: return Types.BOOLEAN;
            default: return Types.STRING;
        }
    }

    private static int index(List<String> names, String name, String what) {
        int i = names.indexOf(name);
        if (i < 0) {
            throw new IllegalArgumentException(what + " " + name + " is not a column of the input " + names);
        }
        return i;
    }

    /**
     * {@code inType} names and types the input's fields (a Table's {@code toDataStream} rows carry their
     * names, but as an external type; the caller states the row type it selected).
     */
    public static Split features(DataStream<Row> in, RowTypeInfo inType, String specJson, String ordering,
                                  long allowedLatenessMs, String uid, String countsDir) {
        Spec spec = Spec.parse(specJson);
        List<String> names = Arrays.asList(inType.getFieldNames());
        int[] colIdx = new int[spec.columns.size()];
        for (int c = 0; c < colIdx.length; c++) {
            colIdx[c] = index(names, spec.columns.get(c), "column");
        }
        int n = names.size(), na = spec.aggs.size();
        TypeInformation<?>[] types = Arrays.copyOf(inType.getFieldTypes(), n + na);
        String[] outNames = Arrays.copyOf(inType.getFieldNames(), n + na);
        for (int a = 0; a < na; a++) {
            types[n + a] = typeOf(spec.aggs.get(a).kind(spec.kinds));
            outNames[n + a] = spec.aggs.get(a).name;
        }
        String[] lateNames = Arrays.copyOf(inType.getFieldNames(), n + 1);
        TypeInformation<?>[] lateTypes = Arrays.copyOf(inType.getFieldTypes(), n + 1);
        lateNames[n] = "watermark";
        lateTypes[n] = Types.LONG;
        OutputTag<Row> lateTag = new OutputTag<>(uid + "-late", new RowTypeInfo(lateTypes, lateNames));
        DeclaredFeatures fn = new DeclaredFeatures(spec, index(names, spec.timeColumn, "time column"),
                index(names, spec.idColumn, "id column"), colIdx, ordering, allowedLatenessMs, inType, lateTag,
                countsDir);
        SingleOutputStreamOperator<Row> out = in
                .keyBy(keySelector(names, spec.keys), Types.STRING)
                .process(fn, new RowTypeInfo(types, outNames))
                .name(uid)
                .uid(uid);
        return new Split(out, lateTag);
    }
}
