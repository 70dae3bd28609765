package io.streamscore.engine;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.UUID;

/**
 * End-of-run counts in the format of udfs/counters.py (RunCounts): one JSON file per operator instance in
 * the run's counts folder, written when the operator closes and renamed into place, so a reader never sees
 * half a file. A null or empty folder counts nothing.
 */
final class RunCounts {
    private final String dir;
    private final String operator;
    private final String stem; // file name prefix: one per operator instance kind (jobs/ops.py counts files per stem)
    private final Map<String, Long> counts = new LinkedHashMap<>();

    RunCounts(String dir, String operator) {
        this(dir, operator, operator);
    }

    /** Counts added to {@code operator}'s totals, from an operator of another kind ({@code stem}, no '-'). */
    RunCounts(String dir, String operator, String stem) {
        this.dir = dir == null || dir.isEmpty() ? null : dir;
        this.operator = operator;
        this.stem = stem;
    }

    void inc(String name) {
        add(name, 1);
    }

    void add(String name, long n) {
        counts.merge(name, n, Long::sum);
    }

    void close() throws IOException {
        if (dir == null || counts.values().stream().allMatch(v -> v == 0)) {
            return;
        }
        Path d = Paths.get(dir);
        Files.createDirectories(d);
        String stem = this.stem + "-" + ProcessHandle.current().pid() + "-" + UUID.randomUUID().toString().substring(0, 8);
        StringBuilder json = new StringBuilder("{\"operator\": \"").append(operator).append("\", \"counts\": {");
        String sep = "";
        for (Map.Entry<String, Long> e : counts.entrySet()) {
            json.append(sep).append('"').append(e.getKey()).append("\": ").append(e.getValue());
            sep = ", ";
        }
        json.append("}}");
        Path tmp = d.resolve("." + stem + ".tmp");
        Files.write(tmp, json.toString().getBytes(StandardCharsets.UTF_8));
        Files.move(tmp, d.resolve(stem + ".json"), StandardCopyOption.ATOMIC_MOVE);
        counts.clear();
    }
}
