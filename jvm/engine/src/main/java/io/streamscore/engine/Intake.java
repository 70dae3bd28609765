package io.streamscore.engine;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * The JVM half of intake: accepts the records that certainly pass the contract, as the Python intake
 * (features/intake.py, features/contracts.py) would, with the same values; anything else is
 * {@code null} ("not certain") and takes the Python path, which gives its exact outcome and reason.
 *
 * <p>Certain means: a JSON object (strict UTF-8, no duplicate key, no nested value, no NaN) or a typed
 * row without a verbatim payload, whose contract fields are present, of the exact JSON/column type,
 * within range, and whose strings are printable ASCII within their length that pass their check
 * (not blank, a regex, one of a set). Restricting strings to ASCII makes Python's and Java's string
 * rules (code points vs UTF-16 units, Unicode whitespace and digits) coincide. The contract arrives as
 * data ({@code EventContract.intake_spec()}); a check it cannot describe sends the field's values to
 * Python. Time guards are not here: they run after both paths ({@link TimeGuards}).
 */
public final class Intake implements Serializable {
    private static final long serialVersionUID = 1L;
    private static final long EXACT_DOUBLE = 1L << 53; // longs beyond this do not compare exactly as doubles

    enum Type { STRING, INT64, FLOAT64, BOOL, TIMESTAMP }

    static final class Field implements Serializable {
        private static final long serialVersionUID = 1L;
        final String name;
        final Type type;
        final boolean required, nullable, label, emit;
        final Double min, max;
        final int maxLength;
        final String checkKind; // null: none; "not_blank", "regex", "one_of"; "opaque": not certain
        final String pattern;
        final Set<String> allowed;
        transient Pattern regex;

        Field(JsonNode f) {
            name = f.get("name").asText();
            type = typeOf(f.get("type").asText());
            required = f.get("required").asBoolean();
            nullable = f.get("nullable").asBoolean();
            label = f.get("label").asBoolean();
            emit = f.get("emit").asBoolean();
            min = f.get("min").isNull() ? null : f.get("min").asDouble();
            max = f.get("max").isNull() ? null : f.get("max").asDouble();
            maxLength = f.get("max_length").asInt();
            JsonNode c = f.get("check");
            checkKind = c == null || c.isNull() ? null : c.get("kind").asText();
            pattern = "regex".equals(checkKind) ? c.get("pattern").asText() : null;
            if ("one_of".equals(checkKind)) {
                allowed = new HashSet<>();
                c.get("values").forEach(v -> allowed.add(v.asText()));
            } else {
                allowed = null;
            }
        }

        boolean stringPasses(String v) {
            if (v.length() > maxLength) {
                return false;
            }
            for (int i = 0; i < v.length(); i++) {
                char ch = v.charAt(i);
                if (ch < 0x20 || ch > 0x7E) {
                    return false;
                }
            }
            if (checkKind == null) {
                return true;
            }
            switch (checkKind) {
                case "not_blank": return !v.trim().isEmpty();
                case "regex":
                    if (regex == null) {
                        regex = Pattern.compile(pattern);
                    }
                    return regex.matcher(v).matches();
                case "one_of": return allowed.contains(v);
                default: return false;
            }
        }

        boolean inRange(double v) {
            return (min == null || min <= v) && (max == null || v <= max);
        }
    }

    private static Type typeOf(String t) {
        switch (t) {
            case "string": return Type.STRING;
            case "int64": return Type.INT64;
            case "float64": return Type.FLOAT64;
            case "bool": return Type.BOOL;
            case "timestamp_ms": return Type.TIMESTAMP;
            default: throw new IllegalArgumentException("unknown field type " + t);
        }
    }

    final List<Field> fields = new ArrayList<>(); // every field checked (labels too, where present)
    private final Map<String, Integer> index = new HashMap<>();
    private int[] emitted; // the fields an accepted event carries, in order
    final long minTime, maxTime;
    private final int maxRecordBytes;
    private transient JsonFactory json;
    private transient CharsetDecoder utf8;

    Intake(String specJson, int maxRecordBytes) {
        try {
            JsonNode spec = new ObjectMapper().readTree(specJson);
            spec.get("fields").forEach(f -> fields.add(new Field(f)));
            minTime = spec.get("min_time").asLong();
            maxTime = spec.get("max_time").asLong();
        } catch (java.io.IOException e) {
            throw new IllegalArgumentException("bad intake spec: " + e.getMessage(), e);
        }
        List<Integer> out = new ArrayList<>();
        for (int i = 0; i < fields.size(); i++) {
            index.put(fields.get(i).name, i);
            if (fields.get(i).emit) {
                out.add(i);
            }
        }
        emitted = out.stream().mapToInt(Integer::intValue).toArray();
        this.maxRecordBytes = maxRecordBytes;
    }

    /** For tests (py4j): the emitted fields of a payload if certain, else null. */
    public static Object[] tryPayload(String specJson, int maxRecordBytes, byte[] payload) {
        return new Intake(specJson, maxRecordBytes).payload(payload);
    }

    /** For tests (py4j): the emitted fields of a typed row (values of every spec field) if certain, else null. */
    public static Object[] tryTyped(String specJson, int maxRecordBytes, Object[] values) {
        return new Intake(specJson, maxRecordBytes).typed(values);
    }

    /** The emitted fields of a JSON payload, in spec order, or null when not certain. */
    Object[] payload(byte[] raw) {
        if (raw == null || raw.length > maxRecordBytes) {
            return null;
        }
        if (json == null) {
            json = new JsonFactory();
            utf8 = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT);
        }
        String text;
        try {
            text = utf8.reset().decode(ByteBuffer.wrap(raw)).toString();
        } catch (CharacterCodingException e) {
            return null;
        }
        if (!text.isEmpty() && text.charAt(0) == '\uFEFF') {
            return null;
        }
        Object[] out = new Object[fields.size()];
        boolean[] seen = new boolean[fields.size()];
        Set<String> keys = new HashSet<>();
        try (JsonParser p = json.createParser(text)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            for (JsonToken tok = p.nextToken(); tok != JsonToken.END_OBJECT; tok = p.nextToken()) {
                if (tok != JsonToken.FIELD_NAME) {
                    return null;
                }
                String key = p.currentName();
                if (!keys.add(key)) {
                    return null; // a repeated key: Python refuses it with its reason
                }
                JsonToken v = p.nextToken();
                if (v == JsonToken.START_OBJECT || v == JsonToken.START_ARRAY || v == null) {
                    return null;
                }
                Integer i = index.get(key);
                if (i == null) {
                    continue; // unknown keys are dropped
                }
                Object val = jsonValue(fields.get(i), p, v);
                if (val == NOT_CERTAIN) {
                    return null;
                }
                out[i] = val;
                seen[i] = true;
            }
            if (p.nextToken() != null) {
                return null; // trailing data
            }
        } catch (java.io.IOException | RuntimeException e) {
            return null;
        }
        for (int i = 0; i < out.length; i++) {
            Field f = fields.get(i);
            if (!seen[i] && f.required && !f.label) {
                return null;
            }
        }
        return emit(out);
    }

    private Object[] emit(Object[] all) {
        Object[] out = new Object[emitted.length];
        for (int i = 0; i < out.length; i++) {
            out[i] = all[emitted[i]];
        }
        return out;
    }

    private static final Object NOT_CERTAIN = new Object();

    private Object jsonValue(Field f, JsonParser p, JsonToken v) throws java.io.IOException {
        if (v == JsonToken.VALUE_NULL) {
            return f.nullable ? null : NOT_CERTAIN;
        }
        switch (f.type) {
            case STRING:
                if (v != JsonToken.VALUE_STRING) {
                    return NOT_CERTAIN;
                }
                String s = p.getText();
                return f.stringPasses(s) ? s : NOT_CERTAIN;
            case BOOL:
                return v == JsonToken.VALUE_TRUE ? Boolean.TRUE : v == JsonToken.VALUE_FALSE ? Boolean.FALSE : NOT_CERTAIN;
            case FLOAT64: {
                double d;
                if (v == JsonToken.VALUE_NUMBER_INT) {
                    if (p.getNumberType() != JsonParser.NumberType.INT && p.getNumberType() != JsonParser.NumberType.LONG) {
                        return NOT_CERTAIN;
                    }
                    long l = p.getLongValue();
                    if (l > EXACT_DOUBLE || l < -EXACT_DOUBLE) {
                        return NOT_CERTAIN;
                    }
                    d = (double) l;
                } else if (v == JsonToken.VALUE_NUMBER_FLOAT) {
                    d = Double.parseDouble(p.getText()); // correctly rounded, as Python's float()
                } else {
                    return NOT_CERTAIN;
                }
                return Double.isFinite(d) && f.inRange(d) ? (Object) d : NOT_CERTAIN;
            }
            case INT64:
            case TIMESTAMP: {
                if (v != JsonToken.VALUE_NUMBER_INT
                        || (p.getNumberType() != JsonParser.NumberType.INT && p.getNumberType() != JsonParser.NumberType.LONG)) {
                    return NOT_CERTAIN;
                }
                return longValue(f, p.getLongValue());
            }
            default:
                return NOT_CERTAIN;
        }
    }

    private Object longValue(Field f, long l) {
        if (l > EXACT_DOUBLE || l < -EXACT_DOUBLE) {
            return NOT_CERTAIN;
        }
        if (f.type == Type.TIMESTAMP && (l < minTime || l > maxTime)) {
            return NOT_CERTAIN;
        }
        return f.inRange((double) l) ? (Object) l : NOT_CERTAIN;
    }

    /**
     * The contract fields of a typed row (Parquet), in spec order, or null when not certain.
     * {@code values[i]} is the row's value of {@code fields.get(i)} (absent columns: null).
     */
    Object[] typed(Object[] values) {
        Object[] out = new Object[fields.size()];
        for (int i = 0; i < out.length; i++) {
            Field f = fields.get(i);
            Object v = values[i];
            if (v == null) {
                // a null column is an absent key (EventContract.from_row), unless the field is nullable
                if (f.nullable || !f.required || f.label) {
                    continue;
                }
                return null;
            }
            Object val;
            switch (f.type) {
                case STRING:
                    val = v instanceof String && f.stringPasses((String) v) ? v : NOT_CERTAIN;
                    break;
                case BOOL:
                    val = v instanceof Boolean ? v : NOT_CERTAIN;
                    break;
                case FLOAT64:
                    val = v instanceof Double && Double.isFinite((Double) v) && f.inRange((Double) v) ? v : NOT_CERTAIN;
                    break;
                default:
                    val = v instanceof Long ? longValue(f, (Long) v) : NOT_CERTAIN;
            }
            if (val == NOT_CERTAIN) {
                return null;
            }
            out[i] = val;
        }
        return emit(out);
    }
}
