"""Secrets in --kafka-config never show (real broker, real MiniCluster, real standalone cluster).

A unique password is planted in a --kafka-config file, in the keys a TLS/SASL deployment would use
(sasl.jaas.config, ssl.truststore.password, ssl.keystore.key). security.protocol=PLAINTEXT keeps
the job talking to the test's PLAINTEXT broker: Kafka ignores the SASL/SSL keys then, but its
clients still log every setting, and Flink still carries them as table options. Then the password
is searched for in everything a user or an operator can see:

- a streaming run to `--until latest` on a MiniCluster: stdout, stderr, every file of its Flink log
  dir, run dir (counts), checkpoint dir and feature output, and the MiniCluster's REST API polled
  while the job runs (job names, job config, plan, JobManager config and environment);
- a run whose Kafka table cannot be created (Flink's ValidationException then lists every table
  option under "Table options are:"; Flink masks only keys with password/secret/jaas/token...);
- a job on the standalone cluster: its REST API and the JobManager's and TaskManager's logs; the
  same test cancels it with `streamscore cancel` and checks the web UI cannot upload a jar.

Each check also asserts the place it searched holds what a leak would sit beside (the Kafka
clients' logged config, the job's REST plan), so an empty or wrong place cannot pass it.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from features.contracts import PAYMENT
from features.synthetic import generate_payments, to_arrow
from streamscore.produce import produce_rows
from jobs.runtime import JARS_DIR, ROOT

pytestmark = pytest.mark.integration

STREAMSCORE = str(Path(sys.executable).parent / "streamscore")
SECRET = f"PLANTED-{uuid.uuid4().hex}"
N = 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path) -> Path:
    path.write_text(
        "# a TLS/SASL client config; PLAINTEXT so the test broker still answers\n"
        "security.protocol=PLAINTEXT\n"
        "sasl.mechanism=PLAIN\n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="u" password="{SECRET}-jaas";\n'
        f"ssl.truststore.password={SECRET}-truststore\n"
        # a PEM private key: Flink's own masking (password, secret, jaas.config, token, ...) misses it
        f"ssl.keystore.key={SECRET}-pem\n")
    return path


def env_for(tmp: Path) -> dict:
    env = dict(os.environ)
    env["FLINK_LOG_DIR"] = str(tmp / "log")  # this run's Flink logs, not the shared .run/log
    env["STREAMSCORE_RUN"] = str(tmp / "run")
    (tmp / "log").mkdir(exist_ok=True)
    return env


def leaks_in_files(*roots: Path) -> list:
    """Files under ``roots`` containing the planted secret, and how many files were searched."""
    found, searched = [], 0
    for root in roots:
        for f in (p for p in Path(root).rglob("*") if p.is_file()):
            searched += 1
            if SECRET.encode() in f.read_bytes():
                found.append(str(f))
    return found, searched


def get(url: str, timeout: float = 5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def rest_snapshot(base: str, job_id: str) -> dict:
    """Every REST view of a job and its cluster that could carry a setting: path -> body."""
    paths = ["/jobs/overview", f"/jobs/{job_id}", f"/jobs/{job_id}/config", f"/jobs/{job_id}/plan",
             f"/jobs/{job_id}/jobmanager/config", f"/jobs/{job_id}/checkpoints/config",
             "/jobmanager/config", "/jobmanager/environment", "/config", "/taskmanagers"]
    out = {}
    for p in paths:
        try:
            out[p] = get(base + p)
        except urllib.error.HTTPError as e:  # a view this Flink does not have
            out[p] = f"HTTP {e.code}"
    for v in json.loads(out[f"/jobs/{job_id}"])["vertices"]:
        p = f"/jobs/{job_id}/vertices/{v['id']}"
        out[p] = get(base + p)
    return out


def test_local_run_shows_the_secret_nowhere(kafka_broker, unique_topic, tmp_path):
    bootstrap = kafka_broker.bootstrap
    topic = unique_topic("in")
    produce_rows(bootstrap, topic, to_arrow(generate_payments(N, seed=71), PAYMENT), PAYMENT)
    cfg = write_config(tmp_path / "client.properties")
    rest_port = free_port()
    argv = [STREAMSCORE, "run", "fraud", "--topic", topic, "--bootstrap", bootstrap, "--until", "latest",
            "--kafka-config", str(cfg), "--group-id", unique_topic("g"),
            "--decisions", f"kafka:{unique_topic('decisions')}", "--dead-letters", f"kafka:{unique_topic('dl')}",
            "--late", f"kafka:{unique_topic('late')}", "--features-out", f"parquet:{tmp_path / 'features'}",
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--checkpoint-interval-ms", "1000",
            "-D", f"rest.bind-port={rest_port}"]  # the MiniCluster's REST API, to read while it runs
    p = subprocess.Popen(argv, cwd=ROOT, env=env_for(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    base, rest, job_id = f"http://127.0.0.1:{rest_port}", {}, None
    try:
        deadline = time.time() + 300
        while p.poll() is None and time.time() < deadline and not rest:
            try:
                jobs = json.loads(get(base + "/jobs/overview"))["jobs"]
                running = [j for j in jobs if j["state"] == "RUNNING"]
                if running:
                    job_id = running[0]["jid"]
                    time.sleep(2)  # let its tasks start (and their Kafka clients log their settings)
                    rest = rest_snapshot(base, job_id)
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                pass
            time.sleep(0.3)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err[-3000:]
    counts = [ln for ln in out.splitlines() if ln.startswith("counts: ")]
    assert counts and counts[0].startswith(f"counts: in {N} = ") and counts[0].endswith("(holds)"), out
    assert rest, "the job's REST API was never reachable while it ran"
    assert json.loads(rest["/jobs/overview"])["jobs"][0]["name"] == "streamscore-fraud"
    assert "Source" in rest[f"/jobs/{job_id}/plan"]  # the plan is really there
    leaked_rest = [path for path, body in rest.items() if SECRET in body]
    assert SECRET not in out and SECRET not in err
    assert not leaked_rest, leaked_rest
    found, searched = leaks_in_files(tmp_path / "log", tmp_path / "run", tmp_path / "ckpt",
                                     tmp_path / "features")
    assert not found, found
    logs = "\n".join(f.read_text(errors="replace") for f in (tmp_path / "log").glob("*.log"))
    # the place a leak would be: Kafka's clients logged their settings, secrets masked
    assert "sasl.jaas.config = [hidden]" in logs and "ssl.truststore.password = [hidden]" in logs
    assert "security.protocol = PLAINTEXT" in logs
    print(f"\n[secrets] local run: {searched} files, {len(rest)} REST views, stdout/stderr: no secret")


def test_a_kafka_table_that_cannot_be_built_shows_no_secret(kafka_broker, unique_topic, tmp_path):
    """Without the Kafka connector on the job's jars, Flink cannot create the source table: its
    ValidationException lists every option ("Table options are: ..."), ssl.keystore.key unmasked.
    The CLI shows one line, scrubbed; nothing of it reaches a log with the secret."""
    cfg = write_config(tmp_path / "client.properties")
    other_jar = next((JARS_DIR / "flink").glob("jsr305-*.jar")).resolve().as_uri()
    argv = [STREAMSCORE, "run", "fraud", "--topic", unique_topic("in"), "--bootstrap", kafka_broker.bootstrap,
            "--until", "latest", "--kafka-config", str(cfg), "--features-out", "none",
            "--decisions", "none", "--dead-letters", "none", "--late", "none",
            "--checkpoint-dir", str(tmp_path / "ckpt"), "-D", f"pipeline.jars={other_jar}"]
    res = subprocess.run(argv, cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=300)
    print(f"\n[secrets] failed build: exit {res.returncode}; stderr: {res.stderr.strip()[:400]}")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not be built" in lines[0] and "Traceback" not in res.stderr, res.stderr
    assert "kafka" in lines[0].lower()  # it names what failed
    assert SECRET not in res.stdout + res.stderr
    found, _ = leaks_in_files(tmp_path / "log", tmp_path / "run")
    assert not found, found


# --------------------------------------------------------------------------- standalone cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from streamscore.cluster import FlinkCluster

    c = FlinkCluster(rest_port=free_port(), taskmanagers=1, slots=2, run_dir=tmp_path_factory.mktemp("flink"))
    c.start(timeout=180)
    try:
        yield c
    finally:
        c.stop()


def cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([STREAMSCORE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_cluster_job_hides_the_secret_and_streamscore_cancel_stops_it(cluster, kafka_broker, unique_topic,
                                                                      tmp_path):
    bootstrap = kafka_broker.bootstrap
    topic = unique_topic("in")
    produce_rows(bootstrap, topic, to_arrow(generate_payments(N, seed=72), PAYMENT), PAYMENT)
    cfg = write_config(tmp_path / "client.properties")
    res = cli("run", "fraud", "--topic", topic, "--bootstrap", bootstrap, "--kafka-config", str(cfg),
              "--group-id", unique_topic("g"), "--decisions", f"kafka:{unique_topic('decisions')}",
              "--dead-letters", "none", "--late", "none", "--features-out", "none",
              "--checkpoint-dir", str(tmp_path / "ckpt"), "--checkpoint-interval-ms", "1000",
              "--cluster", cluster.address, timeout=300)
    assert res.returncode == 0, res.stderr
    assert SECRET not in res.stdout + res.stderr
    job_id = re.search(r"job id ([0-9a-f]{32})", res.stdout).group(1)

    # wait until the tasks run and their Kafka clients logged their settings
    deadline, logs = time.time() + 180, ""
    while time.time() < deadline and "sasl.jaas.config = [hidden]" not in logs:
        time.sleep(1)
        logs = "\n".join(f.read_text(errors="replace") for f in cluster.log_dir.glob("*.log"))
    assert "sasl.jaas.config = [hidden]" in logs, "the TaskManager's Kafka clients never logged their config"
    rest = rest_snapshot(cluster.rest_url, job_id)
    assert [j["name"] for j in json.loads(rest["/jobs/overview"])["jobs"]] == ["streamscore-fraud"]
    assert not [path for path, body in rest.items() if SECRET in body]
    found, searched = leaks_in_files(cluster.log_dir, tmp_path / "ckpt")
    assert not found, found
    # not an output, only measured: the job graph (Java-serialized Kafka source and sinks, their
    # properties included) could be offloaded to the daemons' blob store under tmp/ (0 files seen:
    # a graph this small stays in memory; Flink offloads job information over blob.offload.minsize)
    in_blobs, _ = leaks_in_files(cluster.dir / "tmp")

    # the web UI offers neither upload nor cancel ...
    features = json.loads(rest["/config"])["features"]
    assert features["web-submit"] is False and features["web-cancel"] is False, features
    # a real jar, as the web UI sends it: with web.submit.enable: true this very request answers 200
    # {"status": "success"} (measured); disabled, Flink registers no /jars handlers: HTTP 400 "POST
    # request not allowed", and GET /jars is 404
    jar = next((JARS_DIR / "flink").glob("jsr305-*.jar"))
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"{jar.name}\"\r\n"
            f"Content-Type: application/x-java-archive\r\n\r\n").encode() + jar.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(cluster.rest_url + "/jars/upload", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code in (400, 404, 405), refused.value.code
    assert b"success" not in refused.value.read()
    with pytest.raises(urllib.error.HTTPError) as listed:
        urllib.request.urlopen(cluster.rest_url + "/jars", timeout=10)
    assert listed.value.code == 404

    # ... the CLI cancels: an unknown id is one line naming the running jobs; then the real one,
    # after a checkpoint, so it has one to name
    unknown = cli("cancel", "0" * 32, "--cluster", cluster.address)
    assert unknown.returncode == 1 and unknown.stdout == "", unknown
    assert unknown.stderr.count("\n") == 1 and "no job 00000000" in unknown.stderr, unknown.stderr
    assert f"running there: {job_id} (streamscore-fraud)" in unknown.stderr
    deadline = time.time() + 120
    while time.time() < deadline and not cluster.rest(f"/jobs/{job_id}/checkpoints")["counts"]["completed"]:
        time.sleep(0.5)
    t0 = time.time()
    res = cli("cancel", job_id, "--cluster", cluster.address)
    took = time.time() - t0
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 1 and "CANCELED" in res.stdout and job_id in res.stdout, res.stdout
    assert cluster.job(job_id)["state"] == "CANCELED"
    named = re.search(r"newest retained checkpoint (\S+) ", res.stdout)
    assert named and Path(named.group(1).removeprefix("file:")).joinpath("_metadata").is_file(), res.stdout
    again = cli("cancel", job_id, "--cluster", cluster.address)
    assert again.returncode == 0 and "already CANCELED" in again.stdout, again
    nobody = cli("cancel", job_id, "--cluster", f"127.0.0.1:{free_port()}")
    assert nobody.returncode == 1 and nobody.stderr.count("\n") == 1, nobody
    assert "no Flink cluster answers" in nobody.stderr
    print(f"\n[secrets] cluster: {len(in_blobs)} file(s) of the blob store hold it: {in_blobs[:3]}")
    print(f"[secrets] cluster: {searched} files and {len(rest)} REST views without the secret; jar upload "
          f"HTTP {refused.value.code}; `streamscore cancel` took {took:.1f} s: {res.stdout.strip()}")
