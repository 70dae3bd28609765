package io.streamscore.engine;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

import java.util.Arrays;
import java.util.List;

/**
 * Entry point from PyFlink (through py4j): {@code Engine.features(stream, specJson, ordering, lateness)}
 * keys a stream of named Rows by the spec's key and appends the spec's aggregations to every row.
 * {@code countsDir} (null or empty: none) receives the operator's end-of-run counts.
 */
public final class Engine {
    private Engine() {}

    /** The feature stream and its late side output. */
    public static final class Result {
        private final SingleOutputStreamOperator<Row> features;
        private final OutputTag<Row> lateTag;

        Result(SingleOutputStreamOperator<Row> features, OutputTag<Row> lateTag) {
            this.features = features;
            this.lateTag = lateTag;
        }

        public SingleOutputStreamOperator<Row> features() { return features; }

        public DataStream<Row> late() { return features.getSideOutput(lateTag); }
    }

    static final class FieldKey implements KeySelector<Row, String> {
        private static final long serialVersionUID = 1L;
        private final int idx;

        FieldKey(int idx) { this.idx = idx; }

        @Override public String getKey(Row r) { return (String) r.getField(idx); }
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
    public static Result features(DataStream<Row> in, RowTypeInfo inType, String specJson, String ordering,
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
                .keyBy(new FieldKey(index(names, spec.key, "key")), Types.STRING)
                .process(fn, new RowTypeInfo(types, outNames))
                .name(uid)
                .uid(uid);
        return new Result(out, lateTag);
    }
}
