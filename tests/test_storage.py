"""Checkpoint storage in S3, as on Kubernetes, against a real S3-compatible server.

On Kubernetes the Ray pods share no disk, so runs keep their checkpoints in the
in-cluster S3 store of k8s/checkpoint-storage.yaml (MinIO). MinIO's image cannot run
here; moto's S3 server (a local S3-compatible HTTP server, pip-installed) stands in for
it. The same code path runs: pyarrow's S3 filesystem, Ray Train's uploads and downloads
of checkpoints, and the driver's status files.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training import fault_tolerance, results, run_state, storage
from conftest import PYTHON, run

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
KEYS = {"AWS_ACCESS_KEY_ID": "ray-demo", "AWS_SECRET_ACCESS_KEY": "ray-demo-checkpoints"}
TINY = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "128", "--batch-size", "64",
        "--num-workers", "2", "--cpus-per-worker", "1"]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """A local S3 server; yields the environment variables that point a driver at it."""
    port = free_port()
    server = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.time() < deadline, "moto_server did not start"
            time.sleep(0.2)
    yield {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", **KEYS}
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    return s3_server


def test_json_files_round_trip_through_s3_and_folders_are_listed(s3_env):
    location = "s3://unit-bucket/runs"
    storage.prepare(location)  # creates the bucket
    storage.write_json(storage.join(location, "run-a", "run_status.json"), {"status": "running"})
    storage.write_json(storage.join(location, "run-b", "progress.json"), {"epoch": 2})
    assert storage.read_json("s3://unit-bucket/runs/run-a/run_status.json") == {"status": "running"}
    assert sorted(storage.list_folders(location)) == ["run-a", "run-b"]
    assert storage.exists("s3://unit-bucket/runs/run-b/progress.json")
    assert not storage.exists("s3://unit-bucket/runs/run-b/missing.json")
    assert storage.read_json("s3://unit-bucket/runs/missing.json") is None
    assert storage.list_folders("s3://unit-bucket/nothing-here") == []


def test_plan_run_finds_the_latest_unfinished_run_in_s3(s3_env):
    location = "s3://plan-bucket/runs"
    storage.prepare(location)
    for name, status, updated in (("old", "interrupted", 1), ("done", "completed", 3), ("new", "failed", 2)):
        storage.write_json(storage.join(location, name, run_state.STATUS_FILE),
                           {"status": status, "updated": updated, "settings": {"batch_size": 64}})
    name, run_dir, resuming = run_state.plan_run(location, None, True, {"batch_size": 64})
    assert (name, run_dir, resuming) == ("new", "s3://plan-bucket/runs/new", True)
    with pytest.raises(ValueError, match="A run named 'done' already exists in s3://plan-bucket/runs"):
        run_state.plan_run(location, "done", False, {})


def test_an_unreachable_store_fails_at_once_with_what_to_check(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    started = time.time()
    with pytest.raises(ValueError) as error:
        storage.prepare("s3://any-bucket/runs")
    assert time.time() - started < 30
    message = str(error.value)
    assert "Cannot write checkpoints to s3://any-bucket/runs at http://127.0.0.1:9" in message
    assert "AWS_ENDPOINT_URL" in message and "CHECKPOINTS=1 ./scripts/install-ray.sh" in message


@pytest.mark.parametrize("location", ["s3://", "s3://bucket?endpoint_override=x:9000"])
def test_a_malformed_s3_location_is_refused_with_the_expected_form(location):
    with pytest.raises(ValueError, match="is not of the form s3://bucket/prefix"):
        storage.normalize(location)


def test_a_local_location_is_made_absolute_and_s3_kept():
    assert storage.normalize("checkpoints") == os.path.abspath("checkpoints")
    assert storage.normalize("s3://bucket/runs/") == "s3://bucket/runs"
    assert storage.join("s3://bucket/runs", "x", "y.json") == "s3://bucket/runs/x/y.json"


def test_a_ray_run_checkpoints_into_s3_and_resumes_from_there(local_cluster, s3_server, tmp_path):
    """The Kubernetes storage path for real: only the driver has the store's address and
    keys (the worker nodes were started without them), as the head pod does on minikube."""
    location = "s3://ray-checkpoints/runs"
    env = {**local_cluster["env"], **s3_server}
    common = [PYTHON, "-m", "training.ray_training", *TINY, "--storage-path", location,
              "--run-name", "s3-run", "--results-dir", str(tmp_path)]
    first = run([*common, "--epochs", "1", "--checkpoint"], env=env, timeout=600)
    assert first.returncode == 0, (first.stdout + first.stderr)[-5000:]
    assert "checkpoint of epoch 1 registered in s3://ray-checkpoints/runs/s3-run" in first.stdout

    os.environ.update(s3_server)
    try:
        run_dir = storage.join(location, "s3-run")
        assert storage.read_json(storage.join(run_dir, run_state.STATUS_FILE))["status"] == "completed"
        assert run_state.registered_epoch(run_dir) == 1
        assert storage.list_folders(run_dir) == ["epoch-0001"]
        for name in (fault_tolerance.STATE_FILE, fault_tolerance.WEIGHTS_FILE, fault_tolerance.OPTIMIZER_FILE):
            assert storage.exists(storage.join(run_dir, "epoch-0001", name)), name
        # Pretend the run was interrupted after epoch 1, then continue it to epoch 2: the
        # new worker group downloads the checkpoint from S3.
        status = storage.read_json(storage.join(run_dir, run_state.STATUS_FILE))
        storage.write_json(storage.join(run_dir, run_state.STATUS_FILE), dict(status, status="interrupted"))
    finally:
        for name in s3_server:
            os.environ.pop(name, None)

    resumed = run([*common, "--epochs", "2", "--resume"], env=env, timeout=600)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-5000:]
    assert "restored the epoch 1 checkpoint" in resumed.stdout
    record = json.loads((tmp_path / results.ray_file(2)).read_text())
    assert record["resumed_from_epoch"] == 1 and record["epochs_completed"] == 2
    assert [entry["epoch"] for entry in record["history"]] == [1, 2]
    assert record["weights_identical"] is True and record["run_dir"] == "s3://ray-checkpoints/runs/s3-run"
