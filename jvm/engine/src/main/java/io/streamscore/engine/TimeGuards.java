package io.streamscore.engine;

import org.apache.flink.metrics.Counter;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

import java.util.ArrayList;
import java.util.List;

/**
 * The time guards of features/intake.py ({@code Intake._check_time}), word for word, over the events both
 * intake paths accepted, before watermarks are assigned (so a refused timestamp never moves them):
 * more than {@code maxFutureMs} ahead of the wall clock (the event's ingest time) is {@code time_skew};
 * with stream guards, more than {@code maxJumpMs} ahead of the newest accepted event is {@code time_skew}
 * unless {@value #CONFIRM_JUMP} such events in a row confirm the jump, and more than {@code maxPastMs}
 * behind it is {@code time_skew}. Input: event rows with a trailing payload column; output: the event
 * rows without it, and on {@code rejects} the input row with reason and detail appended.
 */
public final class TimeGuards extends ProcessFunction<Row, Row> {
    private static final long serialVersionUID = 1L;
    static final int CONFIRM_JUMP = 3;
    static final String TIME_SKEW = "time_skew";

    private final int timeIdx, ingestIdx, width;
    private final long maxFuture, maxJump, maxPast;
    private final boolean streamGuards;
    private final OutputTag<Row> rejects;
    private final String countsDir;

    private transient Long newest;
    private transient List<Long> jumps;
    private transient Counter accepted, rejected;
    private transient RunCounts counts;

    TimeGuards(int timeIdx, int ingestIdx, int width, long maxFutureMs, long maxJumpMs, long maxPastMs,
               boolean streamGuards, OutputTag<Row> rejects, String countsDir) {
        if (Math.min(maxFutureMs, Math.min(maxJumpMs, maxPastMs)) <= 0) {
            throw new IllegalArgumentException("intake bounds must be > 0");
        }
        this.timeIdx = timeIdx;
        this.ingestIdx = ingestIdx;
        this.width = width;
        this.maxFuture = maxFutureMs;
        this.maxJump = maxJumpMs;
        this.maxPast = maxPastMs;
        this.streamGuards = streamGuards;
        this.rejects = rejects;
        this.countsDir = countsDir;
    }

    @Override
    public void open(org.apache.flink.api.common.functions.OpenContext ctx) {
        jumps = new ArrayList<>(CONFIRM_JUMP);
        accepted = getRuntimeContext().getMetricGroup().counter("eventsAccepted");
        rejected = getRuntimeContext().getMetricGroup().counter("eventsDeadLettered");
        counts = new RunCounts(countsDir, "parse", "parse_guards"); // the Python intake writes "parse" files too
    }

    @Override
    public void close() throws Exception {
        counts.close();
    }

    /** Why {@code t} is refused, or null; updates the stream-order memory as features/intake.py does. */
    String check(long t, long now) {
        if (t - now > maxFuture) {
            return "event_time " + t + " is " + (t - now) + " ms ahead of the wall clock (max " + maxFuture + ")";
        }
        if (!streamGuards || newest == null) {
            return null;
        }
        if (t - newest > maxJump) {
            if (!jumps.isEmpty() && Math.abs(t - jumps.get(jumps.size() - 1)) > maxJump) {
                jumps.clear(); // not the same new era as the previous candidate
            }
            jumps.add(t);
            if (jumps.size() < CONFIRM_JUMP) {
                return "event_time " + t + " is " + (t - newest) + " ms ahead of the stream (max jump " + maxJump
                        + "; " + CONFIRM_JUMP + " in a row confirm one)";
            }
            newest = jumps.stream().min(Long::compare).get(); // confirmed: the stream moved on
        }
        jumps.clear();
        if (newest - t > maxPast) {
            return "event_time " + t + " is " + (newest - t) + " ms behind the stream";
        }
        return null;
    }

    /** {@link #check}, and an accepted time advances the newest one. */
    String admit(long t, long now) {
        String problem = check(t, now);
        if (problem == null && (newest == null || t > newest)) {
            newest = t;
        }
        return problem;
    }

    /** For tests (py4j): the detail of each refused time of a sequence (null: accepted). */
    public static String[] trace(long[] times, long[] nows, long maxFutureMs, long maxJumpMs, long maxPastMs,
                                 boolean streamGuards) {
        TimeGuards g = new TimeGuards(0, 0, 0, maxFutureMs, maxJumpMs, maxPastMs, streamGuards, null, null);
        g.jumps = new ArrayList<>(CONFIRM_JUMP);
        String[] out = new String[times.length];
        for (int i = 0; i < times.length; i++) {
            out[i] = g.admit(times[i], nows[i]);
        }
        return out;
    }

    @Override
    public void processElement(Row row, Context ctx, Collector<Row> out) {
        long t = (Long) row.getField(timeIdx);
        String problem = admit(t, (Long) row.getField(ingestIdx));
        if (problem != null) {
            rejected.inc();
            counts.inc("dead_letter." + TIME_SKEW);
            Row o = new Row(row.getKind(), row.getArity() + 2);
            for (int i = 0; i < row.getArity(); i++) {
                o.setField(i, row.getField(i));
            }
            o.setField(row.getArity(), TIME_SKEW);
            o.setField(row.getArity() + 1, problem);
            ctx.output(rejects, o);
            return;
        }
        accepted.inc();
        counts.inc("accepted");
        Row o = new Row(row.getKind(), width);
        for (int i = 0; i < width; i++) {
            o.setField(i, row.getField(i));
        }
        out.collect(o);
    }
}
