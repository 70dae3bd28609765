package io.streamscore.engine;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;

/**
 * The content fingerprint of an event, byte for byte the one of features/dedup.py {@code fingerprint}:
 * the first 16 bytes of SHA-256 over a typed encoding of the values in contract order (null {@code N};
 * booleans {@code T}/{@code F}; integers {@code I} + 8 bytes big-endian; doubles {@code D} + the 8 IEEE-754
 * bytes big-endian; strings {@code S} + 4-byte big-endian length + UTF-8). Binary, so Python and Java agree
 * without sharing a float-to-text algorithm.
 */
public final class Fingerprint {
    static final int BYTES = 16;

    private Fingerprint() {}

    public static byte[] of(Object[] values) {
        ByteArrayOutputStream buf = new ByteArrayOutputStream(128);
        ByteBuffer eight = ByteBuffer.allocate(8);
        for (Object v : values) {
            if (v == null) {
                buf.write('N');
            } else if (v instanceof Boolean) {
                buf.write((Boolean) v ? 'T' : 'F');
            } else if (v instanceof Long || v instanceof Integer || v instanceof Short || v instanceof Byte) {
                buf.write('I');
                buf.write(eight.clear().putLong(((Number) v).longValue()).array(), 0, 8);
            } else if (v instanceof Double || v instanceof Float) {
                buf.write('D');
                buf.write(eight.clear().putDouble(((Number) v).doubleValue()).array(), 0, 8);
            } else {
                byte[] s = (v instanceof String ? (String) v : String.valueOf(v)).getBytes(StandardCharsets.UTF_8);
                buf.write(v instanceof String ? 'S' : 'R');
                buf.write(ByteBuffer.allocate(4).putInt(s.length).array(), 0, 4);
                buf.write(s, 0, s.length);
            }
        }
        try {
            return Arrays.copyOf(MessageDigest.getInstance("SHA-256").digest(buf.toByteArray()), BYTES);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JVM", e);
        }
    }

    public static String hex(byte[] fp, int n) {
        StringBuilder sb = new StringBuilder(2 * n);
        for (int i = 0; i < n; i++) {
            sb.append(Character.forDigit((fp[i] >> 4) & 0xF, 16)).append(Character.forDigit(fp[i] & 0xF, 16));
        }
        return sb.toString();
    }

    /** Unsigned lexicographic order, as Python compares bytes. */
    static int compare(byte[] a, byte[] b) {
        return Arrays.compareUnsigned(a, b);
    }
}
