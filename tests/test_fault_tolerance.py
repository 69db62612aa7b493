"""Fault tolerance on the real local cluster: a worker node killed after epoch 1 and the run
still finishes (scripts/experiments/chaos.sh); a run with checkpoints in S3 interrupted with
Ctrl-C and resumed to completion; and the bad input of checkpoints, resuming and chaos. (Ctrl-C of the
benchmark scripts is tested in test_scaling_benchmark.py.)"""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import PYTHON, REPO_ROOT, cluster_processes, interruptible, run
from harness import results, run_state, storage

CHAOS = str(REPO_ROOT / "scripts" / "experiments" / "chaos.sh")
BENCHMARK = str(REPO_ROOT / "scripts" / "run-benchmark.sh")
LOCAL_CLUSTER = str(REPO_ROOT / "scripts" / "local-cluster.sh")
# The chaos demo's own cluster: free of the session cluster (6395) and the other files' ports.
SCRIPT_PORTS = {"RAY_PORT": "6397", "DASHBOARD_PORT": "8277", "CLUSTER_DIR": "/tmp/ray-demo-6397"}
TINY_ENV = {"TRAIN_SIZE": "256", "TEST_SIZE": "128", "BATCH_SIZE": "32", "EPOCHS": "2"}
TINY_FLAGS = ["--dataset", "synthetic", "--train-size", "256", "--test-size", "128", "--batch-size", "32",
              "--num-workers", "2", "--cpus-per-worker", "1", "--epochs", "2"]


# ------------------------------------------------------------------ a worker node is killed

def machine_rehearses_pods():
    from test_pod_rehearsal import rehearsal_works
    return rehearsal_works()


# The chaos demo's flow (checkpoint, failure, restart on a spare node, resume, the recovery
# report) is tested once: on the rehearsed pods with a network cut where this machine can
# rehearse them (test_pod_rehearsal.py), here otherwise. kill-node has a test of its own in
# test_local_cluster_security.py, on that file's cluster.
@pytest.mark.skipif(machine_rehearses_pods(), reason="the chaos demo runs on the rehearsed pods here (test_pod_rehearsal.py)")
def test_chaos_demo_kills_a_worker_node_after_epoch_one_and_the_run_still_finishes(tmp_path):
    env = {**TINY_ENV, **SCRIPT_PORTS, "RESULTS_DIR": str(tmp_path / "results"),
           "CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "KILL_AFTER_EPOCH": "1"}
    finished = run([CHAOS], env=env, timeout=1200)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-6000:]
    record = json.loads((tmp_path / "results" / results.ray_file(2)).read_text())
    # The requested epochs, each counted once, with every sample, after one restart.
    assert record["epochs_completed"] == record["epochs_requested"] == 2
    assert [entry["epoch"] for entry in record["history"]] == [1, 2]
    assert record["restarts"] == 1 and record["restart_resumed_from_epochs"] == [1]
    for worker in record["workers"]:
        assert worker["steps_per_epoch"] == [4, 4] and worker["samples_per_epoch"] == [128] * 2
        assert [epoch["steps"] for epoch in worker["epoch_step_parts"]] == [4, 4]
    checksums = {worker["weights_checksum"] for worker in record["workers"]}
    assert len(checksums) == 1 and record["weights_identical"] is True
    assert len(record["test_predictions"]) == 128 and [worker["test_examples"] for worker in record["workers"]] == [64, 64]
    # The killed node is gone from the group that finished; the new group resumed at epoch 2.
    failure = record["injected_failure"]
    assert failure["after_epoch"] == 1 and failure["resumed_from_epoch"] == 1
    assert failure["node_id"] not in record["attempts"][-1]["nodes"].values()
    assert 0 < failure["detect_and_restart_seconds"] < 600
    assert "CHAOS: epoch 1 is checkpointed; killing the node of worker rank 1" in output
    assert "fault tolerance: RESTART 1: a new worker group (attempt 2) resumes from the epoch 1" in output
    assert "Time lost to one worker failure:" in output and "Restarts of the worker group: 1" in output
    status = json.loads((tmp_path / "checkpoints" / record["run_name"] / run_state.STATUS_FILE).read_text())
    assert status["status"] == "completed"
    assert "Local cluster stopped." in output
    time.sleep(1)
    assert cluster_processes(SCRIPT_PORTS["CLUSTER_DIR"]) == []


# ------------------------------------- checkpoints in S3; Ctrl-C; resumed to completion

def wait_for_checkpoint(run_dir, epoch, process, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "the run ended before it was interrupted"
        if run_state.registered_epoch(run_dir) >= epoch:
            return
        time.sleep(0.5)
    pytest.fail(f"no checkpoint of epoch {epoch} within {timeout}s")


def test_a_run_checkpointing_into_s3_is_interrupted_then_resumed_from_its_checkpoint(
        local_cluster, s3_server, tmp_path, monkeypatch):
    """Kubernetes' storage path for real (only the driver has the store's address and keys,
    as the head pod on minikube), with a Ctrl-C of the driver after epoch 1's checkpoint."""
    location, results_dir = "s3://ray-checkpoints/runs", tmp_path / "results"
    run_dir = storage.join(location, "long-run")
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)  # this test reads the store too
    common = [PYTHON, "-m", "lesson.ray_training", *TINY_FLAGS, "--storage-path", location,
              "--results-dir", str(results_dir)]
    process = subprocess.Popen([*common, "--checkpoint", "--run-name", "long-run"], cwd=REPO_ROOT,
                               env={**os.environ, **local_cluster["env"]}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, preexec_fn=interruptible)
    try:
        wait_for_checkpoint(run_dir, 1, process)
        process.send_signal(signal.SIGINT)  # Ctrl-C
        output = process.communicate(timeout=180)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output[-4000:]
    assert "checkpoint of epoch 1 registered in s3://ray-checkpoints/runs/long-run" in output
    assert "interrupted: no results were written" in output
    assert not (results_dir / results.ray_file(2)).exists()
    assert storage.read_json(storage.join(run_dir, run_state.STATUS_FILE))["status"] == "interrupted"
    assert "epoch-0001" in storage.list_folders(run_dir)

    resumed = run([*common, "--resume"], env=local_cluster["env"], timeout=900)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-5000:]
    assert "restored the epoch 1 checkpoint" in resumed.stdout
    record = json.loads((results_dir / results.ray_file(2)).read_text())
    assert record["run_name"] == "long-run" and record["run_dir"] == run_dir
    assert record["resumed_from_epoch"] == 1 and record["restarts"] == 0
    # Epoch 1's record came back with the checkpoint: the run's history is whole.
    assert record["epochs_completed"] == 2 and [entry["epoch"] for entry in record["history"]] == [1, 2]
    assert record["weights_identical"] is True
    for worker in record["workers"]:
        assert worker["samples_per_epoch"] == [128] * 2
    assert storage.read_json(storage.join(run_dir, run_state.STATUS_FILE))["status"] == "completed"

    again = run([*common, "--resume", "--run-name", "long-run"], env=local_cluster["env"], timeout=120)
    assert again.returncode == 2
    assert "Run 'long-run' already completed" in again.stderr and "RESUME=0" in again.stderr


def test_a_port_taken_by_another_ray_cluster_is_refused_and_that_cluster_left_running(local_cluster, tmp_path):
    assert cluster_processes(local_cluster["cluster_dir"]) != [], "the other cluster must be running"
    started = time.time()
    env = {**TINY_ENV, "RAY_PORT": local_cluster["settings"]["RAY_PORT"], "DASHBOARD_PORT": "8277",
           "CLUSTER_DIR": local_cluster["cluster_dir"] + "-other", "RESULTS_DIR": str(tmp_path)}
    finished = run([CHAOS], env=env, timeout=120)
    assert finished.returncode == 1
    assert f"Port {local_cluster['settings']['RAY_PORT']} is already taken (another Ray cluster?)" in finished.stderr
    assert "RAY_PORT=" in finished.stderr and time.time() - started < 60
    assert cluster_processes(local_cluster["cluster_dir"]) != []  # the other cluster is untouched


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("flags, message", [
    (["--max-failures", "-1"], "MAX_FAILURES (--max-failures) must be a whole number (0 or more), got '-1'."),
    (["--max-failures", "two"], "MAX_FAILURES (--max-failures) must be a whole number (0 or more), got 'two'."),
])
def test_ray_training_rejects_a_bad_max_failures(tmp_path, flags, message):
    finished = run([PYTHON, "-m", "lesson.ray_training", "--smoke-test", "--results-dir", str(tmp_path),
                    *flags], timeout=60)
    assert finished.returncode == 2 and message in finished.stderr


def write_run(storage, name, status, **settings):
    folder = storage / name
    folder.mkdir(parents=True)
    base = {"dataset": "synthetic", "train_size": 256, "test_size": 128, "batch_size": 32, "epochs": 1,
            "num_workers": 2, "seed": 42, "learning_rate": 0.001, "lr_scaling": "none", "allreduce_dtype": "float32"}
    base.update(settings)
    (folder / run_state.STATUS_FILE).write_text(json.dumps(
        {"status": status, "settings": base, "pid": 999999999, "updated": 1.0, "results": "r.json"}))


@pytest.mark.parametrize("prepare, flags, message", [
    (None, ["--resume"], "There is no interrupted run to resume in"),
    (None, ["--resume", "--run-name", "nope"], "There is no run 'nope' to resume in"),
    (("done", "completed", {}), ["--resume"], "There is no interrupted run to resume in"),
    (("done", "completed", {}), ["--resume", "--run-name", "done"], "Run 'done' already completed"),
    (("old", "interrupted", {"train_size": 512}), ["--resume"],
     "Run 'old' cannot be resumed with other settings: train_size 512 -> 256"),
    (("taken", "failed", {}), ["--checkpoint", "--run-name", "taken"],
     "A run named 'taken' already exists in"),
])
def test_resuming_fails_within_seconds_with_what_to_do(tmp_path, prepare, flags, message):
    storage = tmp_path / "checkpoints"
    storage.mkdir()
    if prepare:
        write_run(storage, prepare[0], prepare[1], **prepare[2])
    started = time.time()
    finished = run([PYTHON, "-m", "lesson.ray_training", "--smoke-test", "--num-workers", "2",
                    "--results-dir", str(tmp_path / "results"), "--storage-path", str(storage), *flags],
                   timeout=60)
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert message in finished.stderr
    assert time.time() - started < 30


@pytest.mark.parametrize("env, message", [
    ({"KILL_AFTER_EPOCH": "3", "EPOCHS": "3"}, "KILL_AFTER_EPOCH (3) must be less than EPOCHS (3)"),
    ({"KILL_AFTER_EPOCH": "0"}, "KILL_AFTER_EPOCH must be a whole number of at least 1, got '0'"),
    ({"KILL_RANK": "2"}, "KILL_RANK (2) must name a worker rank, 0 to 1"),
    ({"KILL_RANK": "-1"}, "KILL_RANK must be a whole number (0 or more), got '-1'"),
    ({"KILL_DELAY": "soon"}, "KILL_DELAY must be a whole number (0 or more), got 'soon'"),
    ({"SPARE_NODES": "1.5"}, "SPARE_NODES must be a whole number (0 or more), got '1.5'"),
    ({"MAX_FAILURES": "0"}, "MAX_FAILURES must be a whole number of at least 1, got '0'"),
    # The recipe's settings are checked by lesson/recipe.py, whose message names the setting.
    ({"NUM_WORKERS": "zero"}, ("NUM_WORKERS", "must be a whole number of at least 1, got 'zero'")),
    ({"EPOCHS": "-1"}, ("EPOCHS", "must be a whole number of at least 1, got '-1'")),
    ({"DATASET": "mnist"}, ("DATASET", "synthetic", "cifar10", "got 'mnist'")),
    ({"WAIT_TIMEOUT": "0"}, "WAIT_TIMEOUT must be a whole number of at least 1, got '0'"),
    ({"RAY_PORT": "x"}, "RAY_PORT must be a whole number from 1 to 65535, got 'x'"),
])
def test_chaos_rejects_bad_settings_at_once(env, message):
    started = time.time()
    finished = run([CHAOS], env={**SCRIPT_PORTS, **env}, timeout=60)
    assert finished.returncode == 1
    for part in message if isinstance(message, tuple) else (message,):
        assert part in finished.stderr
    assert "Starting head node" not in finished.stdout and time.time() - started < 10


def test_chaos_refuses_unwritable_folders_and_unknown_arguments(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for name in ("RESULTS_DIR", "CHECKPOINT_DIR"):
        finished = run([CHAOS], env={**SCRIPT_PORTS, name: str(blocker / "sub")}, timeout=60)
        assert finished.returncode == 1 and f"{name} '{blocker / 'sub'}' cannot be created or written" in finished.stderr
    finished = run([CHAOS, "--now"], timeout=60)
    assert finished.returncode == 1 and "Unknown argument '--now'" in finished.stderr


@pytest.mark.parametrize("argument, message", [
    ("", "kill-node needs a worker node number (1, 2, ...) or a Ray node ID, got ''"),
    ("head", "kill-node needs a worker node number"),
    ("7", "Worker node /tmp/ray-demo-test-6390/ray-worker-7 is not running"),
    ("abcdef0123456789abcdef", "No node with ID abcdef0123456789abcdef runs in the local cluster"),
])
def test_kill_node_refuses_what_it_cannot_kill(argument, message):
    finished = run([LOCAL_CLUSTER, "kill-node", argument],
                   env={"RAY_PORT": "6390", "CLUSTER_DIR": "/tmp/ray-demo-test-6390"}, timeout=30)
    assert finished.returncode == 1 and message in finished.stderr


@pytest.mark.parametrize("env, message", [
    ({"MAX_FAILURES": "-1"}, ("MAX_FAILURES", "must be a whole number (0 or more), got '-1'")),
    ({"CHECKPOINT": "yes"}, "CHECKPOINT must be one of: 0 1; got 'yes'"),
    ({"RESUME": "maybe"}, "RESUME must be one of: 0 1; got 'maybe'"),
    ({"DEMO_ALLOCATOR": "jemalloc"}, "DEMO_ALLOCATOR must be one of: tuned system; got 'jemalloc'"),
])
def test_benchmark_rejects_bad_fault_tolerance_and_allocator_settings(env, message):
    finished = run([BENCHMARK], env={"TARGET": "local", **env}, timeout=60)
    assert finished.returncode == 1
    for part in message if isinstance(message, tuple) else (message,):
        assert part in finished.stderr
