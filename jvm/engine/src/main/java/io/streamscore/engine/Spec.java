package io.streamscore.engine;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;

/** A feature set's {@code engine_spec()} (features/featureset.py), read once when the job is built. */
public final class Spec implements Serializable {
    private static final long serialVersionUID = 1L;

    public enum Kind { LONG, DOUBLE, STRING, BOOLEAN }

    public enum Op { COUNT, SUM, MEAN, STD_POP, MIN, MAX, DISTINCT_COUNT, LAST, FIRST_SEEN, EWMA }

    /** One aggregation; {@code column} indexes {@link #columns} (-1 for count). */
    public static final class Agg implements Serializable {
        private static final long serialVersionUID = 1L;
        public final String name;
        public final Op op;
        public final int column;
        public final long windowMs; // Long.MAX_VALUE: unbounded
        public final boolean prior;
        public final int minCount;
        public final long halfLifeMs; // ewma only (0 otherwise)

        Agg(String name, Op op, int column, long windowMs, boolean prior, int minCount, long halfLifeMs) {
            this.name = name;
            this.op = op;
            this.column = column;
            this.windowMs = windowMs;
            this.prior = prior;
            this.minCount = minCount;
            this.halfLifeMs = halfLifeMs;
        }

        /** The type of this aggregation's value. */
        public Kind kind(List<Kind> kinds) {
            switch (op) {
                case COUNT:
                case DISTINCT_COUNT:
                    return Kind.LONG;
                case FIRST_SEEN:
                    return Kind.BOOLEAN;
                case LAST:
                    return kinds.get(column);
                case MIN:
                case MAX:
                    return kinds.get(column) == Kind.LONG ? Kind.LONG : Kind.DOUBLE;
                default:
                    return Kind.DOUBLE;
            }
        }
    }

    public final String name;
    /** The key columns: one (a plain key) or more (a composite key, see Engine#features). */
    public final List<String> keys = new ArrayList<>();
    public final String timeColumn;
    public final String idColumn;
    public final long retentionMs;
    public final List<String> columns = new ArrayList<>();
    public final List<Kind> kinds = new ArrayList<>();
    public final List<Agg> aggs = new ArrayList<>();
    /** The longest bounded window: how far back a scan of the history must go. */
    public final long maxWindowMs;

    private Spec(JsonNode j) {
        name = j.path("name").asText("features");
        JsonNode ks = j.get("keys");
        if (ks != null && ks.isArray()) {
            for (JsonNode k : ks) {
                keys.add(k.asText());
            }
        } else {
            keys.add(req(j, "key").asText());
        }
        if (keys.isEmpty()) {
            throw new IllegalArgumentException("engine spec: no key columns");
        }
        JsonNode order = req(j, "order_by");
        if (order.size() != 2) {
            throw new IllegalArgumentException("order_by must be [time column, id column], got " + order);
        }
        timeColumn = order.get(0).asText();
        idColumn = order.get(1).asText();
        retentionMs = req(j, "retention_ms").asLong();
        for (JsonNode c : req(j, "columns")) {
            columns.add(req(c, "name").asText());
            kinds.add(Kind.valueOf(req(c, "type").asText().toUpperCase()));
        }
        long maxW = 0;
        for (JsonNode a : req(j, "aggregations")) {
            String aname = req(a, "name").asText();
            Op op = Op.valueOf(req(a, "op").asText().toUpperCase());
            JsonNode in = a.path("input");
            int col = in.isMissingNode() || in.isNull() ? -1 : columns.indexOf(in.asText());
            if (op != Op.COUNT && col < 0) {
                throw new IllegalArgumentException("aggregation " + aname + ": input " + in + " is not a column");
            }
            JsonNode w = a.path("window_ms");
            long windowMs = w.isMissingNode() || w.isNull() ? Long.MAX_VALUE : w.asLong();
            if (windowMs != Long.MAX_VALUE) {
                maxW = Math.max(maxW, windowMs);
            }
            long halfLife = a.path("half_life_ms").asLong(0);
            if ((op == Op.EWMA) != (halfLife > 0)) {
                throw new IllegalArgumentException("aggregation " + aname + ": half_life_ms > 0 is for ewma only, "
                        + "and ewma needs it");
            }
            aggs.add(new Agg(aname, op, col, windowMs, a.path("prior").asBoolean(false), a.path("min_count").asInt(0),
                    halfLife));
        }
        maxWindowMs = maxW;
    }

    private static JsonNode req(JsonNode j, String field) {
        JsonNode v = j.get(field);
        if (v == null || v.isNull()) {
            throw new IllegalArgumentException("engine spec: missing " + field);
        }
        return v;
    }

    public static Spec parse(String json) {
        try {
            return new Spec(new ObjectMapper().readTree(json));
        } catch (java.io.IOException e) {
            throw new IllegalArgumentException("engine spec is not JSON: " + e.getMessage(), e);
        }
    }
}
