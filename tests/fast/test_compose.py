"""Deployment files, checked without a container engine: docker-compose.yml (by `docker-compose
config` when that binary exists, and by reading the YAML), deploy/Dockerfile and the Kubernetes
FlinkDeployment."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from jobs.runtime import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
K8S = ROOT / "deploy" / "k8s" / "flinkdeployment.yaml"
FLINK_IMAGE = "flink:2.2.1-scala_2.12-java17"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def image_pinned(ref: str) -> bool:
    """name:tag with a full version tag (major.minor.patch, maybe a suffix), or a digest: not
    latest, not a floating alias like 2.2 or java17, not missing."""
    if "@sha256:" in ref:
        return True
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:  # no tag (a registry port is not a tag)
        return False
    return re.match(r"\d+\.\d+\.\d+", tag) is not None


def test_image_pinned_rule():
    assert image_pinned("apache/kafka:4.2.0") and image_pinned(FLINK_IMAGE)
    assert not image_pinned("apache/kafka") and not image_pinned("apache/kafka:latest")
    assert not image_pinned("localhost:5000/kafka") and not image_pinned("flink:java17")
    assert not image_pinned("flink:2.2-scala_2.12") and image_pinned("flink@sha256:" + "0" * 64)


def test_docker_compose_config_validates():
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose not installed (Debian/Ubuntu: apt-get install docker-compose); "
                    "the YAML checks below still run")
    res = subprocess.run([exe, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_compose_services(compose):
    services = compose["services"]
    assert {"kafka", "jobmanager", "taskmanager", "job"} <= set(services)
    assert services["jobmanager"]["command"] == "jobmanager"
    assert services["taskmanager"]["command"] == "taskmanager"
    for name in ("jobmanager", "taskmanager", "job"):  # one image, built from deploy/Dockerfile
        svc = services[name]
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile" and svc["build"]["context"] == "."
        assert svc["image"] == services["jobmanager"]["image"]
    job = services["job"]
    argv = job["command"]
    assert argv[:2] == ["run", "fraud"]
    assert argv[argv.index("--cluster") + 1] == "jobmanager:8081"
    assert argv[argv.index("--bootstrap") + 1] == "kafka:19092"
    assert "--checkpoint-dir" in argv
    assert job["depends_on"]["jobmanager"]["condition"] == "service_healthy"
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "kafka:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
    for key in ("OFFSETS_TOPIC_REPLICATION_FACTOR", "TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env[f"KAFKA_{key}"] == 1, key
    # the shared checkpoint volume is mounted wherever Flink writes or the client names it
    for name in ("jobmanager", "taskmanager", "job"):
        assert "flink-data:/flink-data" in services[name]["volumes"]


def test_compose_images_pinned(compose):
    for name, svc in compose["services"].items():
        assert "image" in svc, f"{name}: no image (a built service needs a pinned image name too)"
        assert image_pinned(svc["image"]), f"{name}: image {svc['image']!r} is not pinned"


def test_compose_ports_bind_to_loopback(compose):
    published = 0
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):  # long syntax
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: port {port!r} binds to all interfaces"
            published += 1
    assert published >= 2  # Kafka for host clients, the Flink REST API/UI


def test_dockerfile_bases_pinned():
    froms = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.M)
    assert froms and froms[-1] == FLINK_IMAGE  # the runtime stage is the official Flink image
    for ref in froms:
        assert image_pinned(ref), ref
    text = DOCKERFILE.read_text()
    assert "flink-python" in text and "/opt/flink/lib" in text  # PyFlink operators need it on the classpath
    assert "pip install" in text


def test_flinkdeployment():
    docs = [d for d in yaml.safe_load_all(K8S.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    fd = by_kind["FlinkDeployment"]
    assert fd["apiVersion"] == "flink.apache.org/v1beta1"
    spec = fd["spec"]
    assert spec["flinkVersion"] == "v2_2"
    assert image_pinned(spec["image"])
    job = spec["job"]
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert job["jarURI"].startswith("local:///opt/flink/opt/flink-python-")
    assert job["upgradeMode"] == "savepoint" and job["state"] == "running"
    args = job["args"]
    assert args[args.index("-py") + 1] == "/opt/streamscore/streamscore/submit.py"
    assert args[args.index("-py") + 2:args.index("-py") + 4] == ["run", "fraud"]
    assert "--cluster" not in args  # application mode: the job runs inside its own cluster
    # the job's own --parallelism wins over the cluster default, so the two must agree
    assert int(args[args.index("--parallelism") + 1]) == job["parallelism"]
    conf = spec["flinkConfiguration"]
    assert conf["execution.checkpointing.dir"] and conf["execution.checkpointing.savepoint-dir"]
    max_par = int(conf["pipeline.max-parallelism"])
    assert 1 <= job["parallelism"] <= max_par
    # the PVC the pods mount exists in the same file and is shared (RWX)
    claim = spec["podTemplate"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    pvc = by_kind["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == claim and "ReadWriteMany" in pvc["spec"]["accessModes"]
