package io.streamscore.engine;

import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.types.Row;
import org.apache.flink.util.OutputTag;

import java.io.IOException;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * Entry point from PyFlink (udfs/alerts.py, through py4j): alerts, incidents and maintenance tickets over
 * scored sensor readings ({@link Incidents}; rules: features/alerts.py). Column names and types of the
 * outputs are those of features/alerts.py ALERT_COLUMNS / TICKET_COLUMNS; late readings come out as
 * SCORED_COLUMNS + watermark.
 */
public final class Alerts {
    private Alerts() {}

    static final long MAX_POLICY_MS = 30L * 24 * 60 * 60_000; // as features/alerts.py

    static final String[] SCORED = {"event_id", "event_time", "score", "is_anomalous", "reasons", "model_version"};

    static final RowTypeInfo ALERT = new RowTypeInfo(
            new TypeInformation<?>[]{Types.STRING, Types.STRING, Types.STRING, Types.STRING, Types.LONG, Types.DOUBLE,
                    Types.STRING, Types.STRING, Types.LONG},
            new String[]{"event_id", "incident_id", "machine_id", "sensor_id", "event_time", "score", "reasons",
                    "model_version", "alert_seq"});
    static final RowTypeInfo TICKET = new RowTypeInfo(
            new TypeInformation<?>[]{Types.STRING, Types.STRING, Types.STRING, Types.STRING, Types.STRING, Types.LONG,
                    Types.LONG, Types.LONG, Types.LONG, Types.LONG, Types.LONG, Types.DOUBLE, Types.STRING,
                    Types.STRING},
            new String[]{"ticket_id", "incident_id", "machine_id", "sensor_id", "status", "event_time", "started_at",
                    "last_anomalous_at", "ended_at", "anomalous_readings", "alerts", "max_score", "close_reason",
                    "model_version"});
    static final RowTypeInfo LATE = new RowTypeInfo(
            new TypeInformation<?>[]{Types.STRING, Types.STRING, Types.STRING, Types.LONG, Types.DOUBLE, Types.BOOLEAN,
                    Types.STRING, Types.STRING, Types.LONG},
            new String[]{"event_id", "machine_id", "sensor_id", "event_time", "score", "is_anomalous", "reasons",
                    "model_version", "watermark"});

    /** The alerts, and the tickets and late readings beside them. */
    public static final class Streams {
        private final SingleOutputStreamOperator<Row> alerts;
        private final OutputTag<Row> tickets, late;

        Streams(SingleOutputStreamOperator<Row> alerts, OutputTag<Row> tickets, OutputTag<Row> late) {
            this.alerts = alerts;
            this.tickets = tickets;
            this.late = late;
        }

        public SingleOutputStreamOperator<Row> alerts() { return alerts; }

        public DataStream<Row> tickets() { return alerts.getSideOutput(tickets); }

        public DataStream<Row> late() { return alerts.getSideOutput(late); }
    }

    static final class SensorKey implements KeySelector<Row, Tuple2<String, String>> {
        private static final long serialVersionUID = 1L;
        private final int machine, sensor;

        SensorKey(int machine, int sensor) {
            this.machine = machine;
            this.sensor = sensor;
        }

        @Override public Tuple2<String, String> getKey(Row r) {
            return Tuple2.of((String) r.getField(machine), (String) r.getField(sensor));
        }
    }

    /** [min_duration_ms, cooldown_ms, quiet_ms] of a policy's JSON, validated as AlertPolicy is. */
    static long[] policy(String json) {
        JsonNode node;
        try {
            node = new ObjectMapper().readTree(json);
        } catch (IOException e) {
            throw new IllegalArgumentException("alert policy is not JSON: " + json, e);
        }
        String[] keys = {"min_duration_ms", "cooldown_ms", "quiet_ms"};
        long[] low = {0, 0, 1};
        Set<String> seen = new TreeSet<>();
        for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
            seen.add(it.next());
        }
        if (!seen.equals(new TreeSet<>(Arrays.asList(keys)))) {
            throw new IllegalArgumentException("alert policy needs exactly " + Arrays.toString(keys) + ", got " + seen);
        }
        long[] out = new long[3];
        for (int i = 0; i < 3; i++) {
            JsonNode v = node.get(keys[i]);
            if (!v.isIntegralNumber() || !v.canConvertToLong() || v.asLong() < low[i] || v.asLong() > MAX_POLICY_MS) {
                throw new IllegalArgumentException(keys[i] + " must be an integer in [" + low[i] + ", " + MAX_POLICY_MS
                        + "] ms, got " + v);
            }
            out[i] = v.asLong();
        }
        return out;
    }

    private static int index(List<String> names, String name) {
        int i = names.indexOf(name);
        if (i < 0) {
            throw new IllegalArgumentException(name + " is not a column of the scored readings " + names);
        }
        return i;
    }

    /**
     * Keyed by (machine_id, sensor_id) of {@code scored} (rows with the columns {@code names}, at least
     * features/alerts.py SCORED_COLUMNS): the alert rows, with tickets and late readings on the side.
     * {@code countsDir} (null or empty: none) receives end-of-run counts.
     */
    public static Streams incidents(DataStream<Row> scored, String[] names, String policyJson, String uid,
                                    String countsDir) {
        long[] p = policy(policyJson);
        List<String> cols = Arrays.asList(names);
        int[] idx = new int[SCORED.length];
        for (int i = 0; i < idx.length; i++) {
            idx[i] = index(cols, SCORED[i]);
        }
        OutputTag<Row> tickets = new OutputTag<>(uid + "-tickets", TICKET);
        OutputTag<Row> late = new OutputTag<>(uid + "-late", LATE);
        SingleOutputStreamOperator<Row> alerts = scored
                .keyBy(new SensorKey(index(cols, "machine_id"), index(cols, "sensor_id")),
                        Types.TUPLE(Types.STRING, Types.STRING))
                .process(new Incidents(idx, p[0], p[1], p[2], tickets, late, countsDir), ALERT)
                .name(uid)
                .uid(uid);
        return new Streams(alerts, tickets, late);
    }
}
