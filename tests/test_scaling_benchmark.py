"""scripts/experiments/scaling-benchmark.sh and the run folders of scripts/lib/run_dir.sh: plan,
failures, a real sweep."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import REPO_ROOT, cluster_processes, interruptible, run, taken_port

SCRIPT = str(REPO_ROOT / "scripts" / "experiments" / "scaling-benchmark.sh")
# Ports of this file's cluster: free of the session test cluster's (6395), run-benchmark's
# tests' (6396) and the fault-tolerance tests' (6397, 6398).
PORTS = {"RAY_PORT": "6399", "DASHBOARD_PORT": "8279"}
CLUSTER_DIR = f"/tmp/ray-demo-{PORTS['RAY_PORT']}"


def fake_tool(folder, name, output):
    """An executable NAME in FOLDER that prints OUTPUT: put FOLDER first on PATH."""
    folder.mkdir(exist_ok=True)
    tool = folder / name
    tool.write_text(f"#!/usr/bin/env bash\necho '{output}'\n")
    tool.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def run_folders(root):
    return sorted(path for path in root.iterdir() if path.is_dir() and not path.is_symlink())


# ---------------------------------------------------------------- settings and plan


def test_help_lists_every_setting():
    finished = run([SCRIPT, "--help"])
    assert finished.returncode == 0
    for setting in ("WORKER_COUNTS=", "SINGLE_BASELINE=0", "CPUS_PER_WORKER=1", "EPOCHS=3", "BATCH_SIZE=64", "DATASET=synthetic",
                    "TRAIN_SIZE=4096", "TEST_SIZE=1024", "DATA_DIR=.data", "RESULTS_DIR=results", "RAY_PORT=6380",
                    "DASHBOARD_PORT=8265", "PIN_CPUS=auto", "--smoke-test", "--dry-run"):
        assert setting in finished.stdout, setting


@pytest.mark.parametrize("cores, counts", [("2", "1 2"), ("4", "1 2"), ("8", "1 2 4"), ("16", "1 2 4 8")])
def test_the_default_worker_counts_are_powers_of_two_up_to_one_less_than_the_cores(tmp_path, cores, counts):
    finished = run([SCRIPT, "--dry-run"], env=fake_tool(tmp_path, "getconf", cores))
    assert finished.returncode == 0, finished.stderr
    assert f'WORKER_COUNTS="{counts}"' in finished.stdout
    assert f"this machine has {cores} cores" in finished.stdout
    last = counts.split()[-1]
    assert (f"Configuration {len(counts.split())}/{len(counts.split())}: plain Keras at batch {64 * int(last)}, "
            f"then Ray Train with {last} worker(s) at batch 64 each") in finished.stdout
    assert "Dry run: nothing was started." in finished.stdout


def test_a_single_baseline_is_planned_once_and_reused_by_every_later_configuration(tmp_path):
    finished = run([SCRIPT, "--dry-run"], env={"SINGLE_BASELINE": "1", **fake_tool(tmp_path, "getconf", "16")})
    assert finished.returncode == 0, finished.stderr
    assert "Configuration 1/4: plain Keras at batch 64, then Ray Train with 1 worker(s)" in finished.stdout
    for index, workers in ((2, 2), (3, 4), (4, 8)):
        assert (f"Configuration {index}/4: the first configuration's baseline again, then Ray Train with "
                f"{workers} worker(s)") in finished.stdout
    refused = run([SCRIPT, "--dry-run"], env={"SINGLE_BASELINE": "yes"})
    assert refused.returncode == 1 and "SINGLE_BASELINE must be one of: 0 1; got 'yes'" in refused.stderr


def test_the_default_sweep_estimate_follows_from_the_committed_quick_start(tmp_path):
    """On 2 cores the default sweep is 1 and 2 workers, each with its baseline: about twice
    the quick start's baseline and Ray run (docs/results/quickstart/), which is the 2-worker
    configuration itself."""
    finished = run([SCRIPT, "--dry-run"], env=fake_tool(tmp_path, "getconf", "2"))
    minutes = int(finished.stdout.split("Estimated time: about ")[1].split()[0])
    quickstart = REPO_ROOT / "docs" / "results" / "quickstart"
    runs = [json.loads((quickstart / name).read_text())
            for name in ("baseline_results.json", "ray_results_2workers.json")]
    two_worker_minutes = sum(run["total_time_seconds"] for run in runs) / 60
    assert 1.5 * two_worker_minutes <= minutes <= 3 * two_worker_minutes, (minutes, two_worker_minutes)


def test_worker_counts_are_sorted_and_counted_once_and_too_many_for_the_cores_are_refused(tmp_path):
    cores = fake_tool(tmp_path, "getconf", "2")
    finished = run([SCRIPT, "--dry-run"], env={"WORKER_COUNTS": "4 1 02 2", **cores})
    assert finished.returncode == 1
    assert ("the largest of WORKER_COUNTS=4 x CPUS_PER_WORKER=1 asks for 4 CPUs, but this machine has 2 cores"
            in finished.stderr)
    finished = run([SCRIPT, "--dry-run"], env={"WORKER_COUNTS": "4 1 02 2", "ALLOW_OVERSUBSCRIBE": "1", **cores})
    assert finished.returncode == 0, finished.stderr
    assert 'WORKER_COUNTS="1 2 4"' in finished.stdout
    assert "PIN_CPUS=0" in finished.stdout  # 4 worker nodes cannot each have a core of 2
    assert "the comparison is oversubscribed" in finished.stderr


@pytest.mark.parametrize("env, message", [
    ({"WORKER_COUNTS": "0"}, "WORKER_COUNTS must be a whole number of at least 1, got '0'"),
    ({"WORKER_COUNTS": "1 two"}, "WORKER_COUNTS must be a whole number of at least 1, got 'two'"),
    ({"WORKER_COUNTS": " "}, "WORKER_COUNTS is empty"),
    # The recipe's settings are checked by lesson/recipe.py, whose message names the setting.
    ({"EPOCHS": "0"}, ("EPOCHS", "must be a whole number of at least 1, got '0'")),
    ({"CPUS_PER_WORKER": "half"}, ("CPUS_PER_WORKER", "must be a whole number of at least 1, got 'half'")),
    ({"DATASET": "imagenet"}, ("DATASET", "synthetic", "cifar10", "got 'imagenet'")),
    ({"PIN_CPUS": "yes"}, "PIN_CPUS must be one of: auto 0 1; got 'yes'"),
])
def test_bad_settings_fail_at_once_with_a_clear_message(tmp_path, env, message):
    finished = run([SCRIPT], env={"RESULTS_DIR": str(tmp_path), **env}, timeout=60)
    assert finished.returncode == 1
    for part in message if isinstance(message, tuple) else (message,):
        assert part in finished.stderr
    assert list(tmp_path.iterdir()) == []  # no run folder for a run that never started


def test_unknown_argument_is_refused():
    finished = run([SCRIPT, "--full"])
    assert finished.returncode == 1
    assert "Unknown argument '--full'" in finished.stderr


# ---------------------------------------------------------------- run folders (lib/run_dir.sh)


def lib(command, tmp_path, **env):
    script = f"source scripts/lib/common.sh && source scripts/lib/run_dir.sh && {command}"
    return run(["bash", "-c", script], env={**env, **fake_tool(tmp_path / "bin", "date", "20261125-180000")})


def test_two_runs_in_the_same_second_get_two_folders(tmp_path):
    finished = lib(f"create_run_dir {tmp_path}/results local && create_run_dir {tmp_path}/results local",
                   tmp_path)
    assert finished.stdout.split() == [f"{tmp_path}/results/20261125-180000-local",
                                       f"{tmp_path}/results/20261125-180000-local-2"]
    assert (tmp_path / "results" / "20261125-180000-local-2").is_dir()


def test_a_completed_run_moves_latest_with_a_relative_link(tmp_path):
    root = tmp_path / "results"
    (root / "old").mkdir(parents=True)
    (root / "new").mkdir()
    (root / "latest").symlink_to("old")
    finished = lib(f"close_run_dir 0 {root}/new 1", tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert os.readlink(root / "latest") == "new"
    assert not (root / "new" / "FAILED").exists()


@pytest.mark.parametrize("setup, reason", [
    ("LAST_ERROR='The baseline training failed (see above).'", "The baseline training failed (see above)."),
    ("INTERRUPTED=SIGINT", "Interrupted by SIGINT (exit status 130)."),
    ("true", "Exited with status 130; see the output of the run."),
])
def test_a_failed_run_gets_a_failed_file_with_the_reason_and_latest_stays(tmp_path, setup, reason):
    root = tmp_path / "results"
    (root / "old").mkdir(parents=True)
    (root / "new").mkdir()
    (root / "latest").symlink_to("old")
    finished = lib(f"{setup}; close_run_dir 130 {root}/new 1", tmp_path)
    assert (root / "new" / "FAILED").read_text() == reason + "\n"
    assert os.readlink(root / "latest") == "old"
    assert "FAILED file saying why" in finished.stderr


def test_a_run_folder_chosen_by_the_caller_leaves_latest_alone(tmp_path):
    root = tmp_path / "results"
    (root / "sweep" / "workers-1").mkdir(parents=True)
    finished = lib(f"close_run_dir 0 {root}/sweep/workers-1 0", tmp_path)
    assert finished.returncode == 0
    assert not (root / "sweep" / "latest").exists()


# ---------------------------------------------------------------- failures for real


def test_a_sweep_that_cannot_start_its_cluster_leaves_failed_and_does_not_move_latest(tmp_path):
    (tmp_path / "20260101-000000-sweep").mkdir()
    (tmp_path / "latest").symlink_to("20260101-000000-sweep")
    with taken_port() as port:
        finished = run([SCRIPT, "--smoke-test"], env={"RESULTS_DIR": str(tmp_path), "RAY_PORT": str(port),
                                                      "DASHBOARD_PORT": PORTS["DASHBOARD_PORT"]}, timeout=300)
    assert finished.returncode == 1
    assert f"Port {port} is already taken" in finished.stderr
    new = [folder for folder in run_folders(tmp_path) if folder.name != "20260101-000000-sweep"]
    assert len(new) == 1 and new[0].name.endswith("-sweep-smoke")
    assert (new[0] / "FAILED").read_text() == "Could not start the local Ray cluster (see the message above).\n"
    assert os.readlink(tmp_path / "latest") == "20260101-000000-sweep"


def test_a_sweep_reuses_its_single_baseline_and_a_ctrl_c_in_a_ray_run_leaves_no_ray_process(tmp_path):
    """A real smoke sweep of 1 and 2 workers on one baseline (SINGLE_BASELINE=1): the first
    configuration runs whole; Ctrl-C while the second's Ray run places its workers stops the
    driver, its workers and the cluster; both the sweep's folder and that configuration's say
    why, and `latest` does not move. (The TensorFlow-alone control is tested by the smoke run.)"""
    env = dict(os.environ, RESULTS_DIR=str(tmp_path), SINGLE_BASELINE="1", TENSORFLOW_ALONE="0", **PORTS)
    process = subprocess.Popen([SCRIPT, "--smoke-test"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               preexec_fn=interruptible)
    seen, second = [], False
    try:
        for line in process.stdout:
            seen.append(line)
            second = second or "Configuration 2/2: 2 worker(s) -> " in line
            if second and "ray: run '" in line:
                break  # the second configuration's Ray run has asked for its workers
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        seen.append(process.communicate(timeout=180)[0])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            run([str(REPO_ROOT / "scripts" / "local-cluster.sh"), "stop"], env={"RAY_PORT": PORTS["RAY_PORT"]})
    output = "".join(seen)
    assert process.returncode == 130, output[-3000:]
    (sweep,) = run_folders(tmp_path)
    assert sweep.name.endswith("-sweep-smoke")
    # The first configuration ran whole: its baseline (batch 32), its Ray run, comparison, report.
    first = sweep / "workers-1"
    baseline = json.loads((first / "baseline_results.json").read_text())
    ray_run = json.loads((first / "ray_results_1workers.json").read_text())
    assert baseline["global_batch_size"] == ray_run["global_batch_size"] == 32
    assert baseline["cpus_per_worker"] == ray_run["cpus_per_worker"] == 1
    assert (first / "comparison.json").exists() and (first / "REPORT.md").exists()
    assert not (first / "FAILED").exists()
    # The second reused that baseline instead of training another one.
    second = sweep / "workers-2"
    assert (second / "baseline_results.json").read_text() == (first / "baseline_results.json").read_text()
    assert "1/3 Baseline: reusing " in output and output.count("baseline epoch 1: ") == 1
    # The interrupted Ray run wrote nothing; both folders say why; `latest` stays.
    assert "ray_training: interrupted: no results were written" in output
    assert not (second / "ray_results_2workers.json").exists()
    assert (sweep / "FAILED").read_text() == "Interrupted by SIGINT (exit status 130).\n"
    assert (second / "FAILED").read_text().startswith("Interrupted by SIGINT")
    assert not (tmp_path / "latest").exists()
    assert "Local cluster stopped." in output
    time.sleep(1)
    assert cluster_processes(CLUSTER_DIR) == []
