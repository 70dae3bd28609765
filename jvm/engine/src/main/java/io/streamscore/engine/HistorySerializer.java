package io.streamscore.engine;

import org.apache.flink.api.common.typeutils.SimpleTypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.TypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.base.TypeSerializerSingleton;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputView;
import org.apache.flink.types.StringValue;

import java.io.IOException;

/** Compact, self-describing bytes of a {@link History} (its column kinds lead), for any state backend. */
public final class HistorySerializer extends TypeSerializerSingleton<History> {
    private static final long serialVersionUID = 1L;
    public static final HistorySerializer INSTANCE = new HistorySerializer();
    private static final Spec.Kind[] KINDS = Spec.Kind.values();

    @Override public boolean isImmutableType() { return false; }

    @Override public History createInstance() { return new History(new Spec.Kind[0], 4); }

    @Override
    public History copy(History from) {
        History h = new History(from.kinds.clone(), from.size);
        h.size = from.size;
        System.arraycopy(from.time, 0, h.time, 0, from.size);
        System.arraycopy(from.id, 0, h.id, 0, from.size);
        for (int c = 0; c < from.kinds.length; c++) {
            System.arraycopy(from.cols[c], 0, h.cols[c], 0, from.size);
            System.arraycopy(from.nulls[c], 0, h.nulls[c], 0, from.size);
        }
        h.hasLast = from.hasLast;
        h.lastTime = from.lastTime;
        h.lastId = from.lastId;
        System.arraycopy(from.lastVals, 0, h.lastVals, 0, from.lastVals.length);
        return h;
    }

    @Override public History copy(History from, History reuse) { return copy(from); }

    @Override public int getLength() { return -1; }

    private static void writeValue(Spec.Kind k, Object v, DataOutputView out) throws IOException {
        out.writeBoolean(v == null);
        if (v == null) {
            return;
        }
        switch (k) {
            case LONG: out.writeLong((Long) v); break;
            case DOUBLE: out.writeDouble((Double) v); break;
            case BOOLEAN: out.writeBoolean((Boolean) v); break;
            default: StringValue.writeString((String) v, out);
        }
    }

    private static Object readValue(Spec.Kind k, DataInputView in) throws IOException {
        if (in.readBoolean()) {
            return null;
        }
        switch (k) {
            case LONG: return in.readLong();
            case DOUBLE: return in.readDouble();
            case BOOLEAN: return in.readBoolean();
            default: return StringValue.readString(in);
        }
    }

    @Override
    public void serialize(History h, DataOutputView out) throws IOException {
        out.writeInt(h.kinds.length);
        for (Spec.Kind k : h.kinds) {
            out.writeByte(k.ordinal());
        }
        out.writeInt(h.size);
        for (int i = 0; i < h.size; i++) {
            out.writeLong(h.time[i]);
            StringValue.writeString(h.id[i], out);
            for (int c = 0; c < h.kinds.length; c++) {
                writeValue(h.kinds[c], h.get(c, i), out);
            }
        }
        out.writeBoolean(h.hasLast);
        if (h.hasLast) {
            out.writeLong(h.lastTime);
            StringValue.writeString(h.lastId, out);
            for (int c = 0; c < h.kinds.length; c++) {
                writeValue(h.kinds[c], h.lastVals[c], out);
            }
        }
    }

    @Override
    public History deserialize(DataInputView in) throws IOException {
        Spec.Kind[] kinds = new Spec.Kind[in.readInt()];
        for (int c = 0; c < kinds.length; c++) {
            kinds[c] = KINDS[in.readByte()];
        }
        int n = in.readInt();
        History h = new History(kinds, n + 4);
        for (int i = 0; i < n; i++) {
            h.time[i] = in.readLong();
            h.id[i] = StringValue.readString(in);
            for (int c = 0; c < kinds.length; c++) {
                h.set(c, i, readValue(kinds[c], in));
            }
        }
        h.size = n;
        h.hasLast = in.readBoolean();
        if (h.hasLast) {
            h.lastTime = in.readLong();
            h.lastId = StringValue.readString(in);
            for (int c = 0; c < kinds.length; c++) {
                h.lastVals[c] = readValue(kinds[c], in);
            }
        }
        return h;
    }

    @Override public History deserialize(History reuse, DataInputView in) throws IOException { return deserialize(in); }

    @Override
    public void copy(DataInputView in, DataOutputView out) throws IOException {
        serialize(deserialize(in), out);
    }

    @Override
    public TypeSerializerSnapshot<History> snapshotConfiguration() {
        return new Snapshot();
    }

    /** Restores the serializer from a savepoint (the format carries its own column kinds). */
    public static final class Snapshot extends SimpleTypeSerializerSnapshot<History> {
        public Snapshot() {
            super(() -> INSTANCE);
        }
    }
}
