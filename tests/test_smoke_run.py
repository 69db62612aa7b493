"""The whole local benchmark for real, once per session: `MONITORING=1 ./scripts/run-benchmark.sh
--smoke-test` (the `smoke_run` fixture of conftest.py) starts its own cluster, trains the
baseline and a 2-worker Ray run, compares them, writes REPORT.md and stops the cluster. The
tests here check what it printed and wrote; tests/test_monitoring.py checks its Prometheus."""

import json
import os
import shlex

import pytest

from conftest import REPO_ROOT, actors_started, cluster_processes, run
from harness import results, step_timing


def load(smoke_run, name):
    return json.loads((smoke_run["run_dir"] / name).read_text())


def test_the_benchmark_runs_both_trainings_compares_them_reports_and_stops_its_cluster(smoke_run):
    assert smoke_run["returncode"] == 0, (smoke_run["stdout"] + smoke_run["stderr"])[-5000:]
    stdout = smoke_run["stdout"]
    assert stdout.splitlines()[0].startswith("Target: local, because ")
    assert f"Dashboard: http://127.0.0.1:{smoke_run['env']['DASHBOARD_PORT']}" in stdout
    # Each run gets its own folder; `latest` is a relative link to it.
    latest = smoke_run["results_dir"] / "latest"
    assert os.readlink(latest).endswith("-local-smoke") and "/" not in os.readlink(latest)
    assert not (smoke_run["run_dir"] / "FAILED").exists()
    baseline, ray_run = load(smoke_run, results.BASELINE_FILE), load(smoke_run, results.ray_file(2))
    comparison = load(smoke_run, results.COMPARISON_FILE)
    # The baseline gets one worker's CPUs and the Ray run's global batch.
    assert baseline["cpus_per_worker"] == 1 and baseline["global_batch_size"] == ray_run["global_batch_size"] == 64
    assert comparison["speedup"] == pytest.approx(baseline["train_time_seconds"] / ray_run["train_time_seconds"])
    assert comparison["warnings"] == []
    # One epoch of 4 steps cannot settle (harness/steady_state.py): no steady-state speedup,
    # and the comparison says why, beside the targets too (analysis/recipe_checks.py).
    assert comparison["throughput_ratio"] is None and baseline["images_per_second"] is None
    assert ray_run["steady_state"]["verdict"].startswith("too short to settle with 1 epoch")
    assert {warning["check"] for warning in comparison["recipe_warnings"]} == {"settling", "steps", "plateau"}
    assert "Speedup (throughput):      not measured: the baseline and Ray Train had not settled" in stdout
    assert "Break-even:                not computed: " in stdout
    assert "TOO SHORT for the throughput: 4 steps per worker per epoch, fewer than 20" in stdout
    assert "        TOO SHORT: the baseline and Ray Train: 1 epoch, no accuracy curve" in stdout
    # The targets with verdicts, for a 2-core machine or a bigger one.
    assert "Ray 2 workers: steady-state throughput >= " in stdout
    assert "Ray 2 workers: trainer start to first batch <= " in stdout
    report = (smoke_run["run_dir"] / "REPORT.md").read_text()
    for section in ("## Where each step's time goes", "## When Ray pays off", "## Per-class results"):
        assert section in report, section
    assert report.count("Confusion matrix") == 2
    for picture in ("speedup.png", "epoch_times.png", "break_even.png", "learning_curves_2workers.png"):
        assert (smoke_run["run_dir"] / picture).read_bytes().startswith(b"\x89PNG"), picture
    assert "Local cluster stopped." in stdout
    assert cluster_processes(smoke_run["cluster_dir"]) == []


def test_the_ray_run_starts_only_the_helper_actors_it_needs(smoke_run):
    # lesson/workarounds.py section 9: no Ray Data actors (for datasets or an autoscaler), and no
    # placement-group cleaner for a driver that ends with its run; the cluster's logs name them all.
    actors = actors_started(smoke_run["cluster_dir"])
    assert actors.get("RayTrainWorker") == 2 and actors.get("TrainController") == 1, actors
    assert not {"DatasetManager", "_AutoscalingCoordinatorActor", "PlacementGroupCleaner"} & set(actors), actors


def test_the_baseline_writes_the_results_contract(smoke_run):
    record = load(smoke_run, results.BASELINE_FILE)
    for key in results.RUN_KEYS:
        assert key in record, key
    assert record["training_type"] == "baseline" and record["num_workers"] == 1
    assert record["epochs_completed"] == 1 and len(record["epoch_times_seconds"]) == 1
    assert record["samples_per_epoch"] == 256 and len(record["test_predictions"]) == 128
    # The accuracy is the predictions' accuracy on the rebuilt test labels (analysis/run_folder.py and tables.py check it).
    assert record["test_accuracy"] == pytest.approx(
        sum(1 for predicted, label in zip(record["test_predictions"], _labels(record)) if predicted == label) / 128)
    assert record["versions"]["keras"].startswith("2.") and record["versions"]["ray"]
    assert record["startup_seconds"] < record["total_time_seconds"]
    assert record["epoch_cpu_seconds"][0] > 0 and record["epoch_page_faults"][0] > 0
    assert "baseline epoch 1: " in smoke_run["stdout"]


def _labels(record):
    from lesson import data

    return data.load_dataset(record["dataset"], 1, record["test_size"], seed=record["seed"]).y_test


def test_the_ray_run_shards_the_data_synchronises_the_weights_and_uses_two_nodes(smoke_run):
    record = load(smoke_run, results.ray_file(2))
    for key in results.RUN_KEYS:
        assert key in record, key
    workers = record["workers"]
    assert [worker["rank"] for worker in workers] == [0, 1]
    # Every worker on its own node: the head offers no CPUs, each worker node offers one.
    assert len({worker["node_id"] for worker in workers}) == 2
    head_nodes = [node["node_id"] for node in record["cluster"]["nodes"] if node["cpus"] == 0]
    assert not set(head_nodes) & {worker["node_id"] for worker in workers}
    # Gradients were all-reduced: the final weights are the same on both workers.
    assert workers[0]["weights_checksum"] == workers[1]["weights_checksum"] and record["weights_identical"] is True
    # Data was sharded: each worker ran its own input pipeline over half of every epoch.
    assert sorted(tuple(worker["input_pipelines"][0]) for worker in workers) == [(0, 2), (1, 2)]
    assert record["samples_per_epoch"] == 256 and record["global_batch_size"] == 64
    for worker in workers:
        assert worker["samples_per_epoch"] == [128] and worker["steps_per_epoch"] == [4]
    # The final test was split: each worker evaluated half of the test set, put back in order.
    assert [worker["test_examples"] for worker in workers] == [64, 64] and len(record["test_predictions"]) == 128
    assert 0 < record["trainer_start_to_first_batch_seconds"] < record["startup_seconds"]


def test_a_run_without_checkpoints_leaves_no_run_folder_behind(smoke_run):
    """CHECKPOINT=0 (the default): Ray Train's state lived in a temporary folder, removed at the
    end; the checkpoint folder got no ray-demo-* folder of this run (it used to get one a run)."""
    record = load(smoke_run, results.ray_file(2))
    assert record["checkpointing"] is False and record["run_dir"] is None
    assert not (REPO_ROOT / "checkpoints" / record["run_name"]).exists()
    assert f"ray: run '{record['run_name']}' in a temporary folder, removed at the end;" in smoke_run["stdout"]


def test_every_step_is_split_into_parts_that_add_up_to_it(smoke_run):
    for name in (results.BASELINE_FILE, results.ray_file(2)):
        breakdown = load(smoke_run, name)["step_breakdown"]
        per_step = breakdown["seconds_per_step"]
        assert breakdown["steps"] == (4 if name == results.BASELINE_FILE else 8)
        parts = sum(per_step[part] for part in step_timing.PARTS if part != "allreduce_cpu")
        assert parts == pytest.approx(per_step["step"], rel=1e-6), name
        assert per_step["compute"] > per_step["optimizer"] > 0, name
    ray_parts = load(smoke_run, results.ray_file(2))["step_breakdown"]["seconds_per_step"]
    # Two workers wait for each other in the all-reduce; one process has none to wait for.
    assert ray_parts["allreduce"] > 10 * load(smoke_run, results.BASELINE_FILE)["step_breakdown"][
        "seconds_per_step"]["allreduce"]


def test_each_worker_prints_its_own_progress_line_once(smoke_run):
    """Ray's log deduplication would fold worker 1's epoch line into worker 0's
    ("[repeated 2x across cluster]"); importing the `training` package turns it off."""
    stdout = smoke_run["stdout"]
    assert stdout.count("ray worker 0/2 epoch 1: ") == 1 and stdout.count("ray worker 1/2 epoch 1: ") == 1
    assert "repeated 2x across cluster" not in stdout + smoke_run["stderr"]


def test_a_cpu_run_prints_no_cuda_errors(smoke_run):
    output = smoke_run["stdout"] + smoke_run["stderr"]
    for noise in ("failed call to cuInit", "Could not find cuda drivers", "absl::InitializeLog"):
        assert noise not in output, noise


def test_the_commands_in_the_report_can_be_pasted_as_printed(smoke_run):
    """REPORT.md's "Commands run" are what a user types from the repository root; run with
    --help, each one's interpreter, module and flags are what the repository has."""
    report = (smoke_run["run_dir"] / "REPORT.md").read_text()
    block = report.split("Commands run:", 1)[1].split("```", 2)[1]
    commands = [line for line in block.splitlines() if line.strip()]
    modules = ["lesson.baseline_training", "harness.tensorflow_alone", "lesson.ray_training"]
    assert [shlex.split(command)[2] for command in commands] == modules
    for command in commands:
        words = shlex.split(command)
        assert words[:2] == [".venv/bin/python", "-m"] and words[2] in modules, command
        finished = run([str(REPO_ROOT / words[0]), *words[1:], "--help"], timeout=120)
        assert finished.returncode == 0, (command, finished.stderr[-2000:])
    # The report names the command that wrote it (the run folder is outside the repository here).
    assert f"`.venv/bin/python -m analysis.report --run-dir {smoke_run['run_dir']}`" in report


def test_tensorflow_alone_trains_the_same_recipe_without_ray_and_joins_the_comparison(smoke_run):
    from harness import tensorflow_alone

    record = load(smoke_run, tensorflow_alone.results_file(2))
    ray_run, comparison = load(smoke_run, results.ray_file(2)), load(smoke_run, results.COMPARISON_FILE)
    for key in results.RUN_KEYS:
        assert key in record, key
    assert record["training_type"] == "tensorflow_alone" and record["cluster"] is None
    for key in ("train_size", "epochs_completed", "global_batch_size", "samples_per_epoch", "seed", "allocator"):
        assert record[key] == ray_run[key], key
    # Two plain processes, no Ray: each read its own shard and they ended with the same weights.
    workers = record["workers"]
    assert [worker["rank"] for worker in workers] == [0, 1] and len({worker["pid"] for worker in workers}) == 2
    assert sorted(tuple(worker["input_pipelines"][0]) for worker in workers) == [(0, 2), (1, 2)]
    assert record["weights_identical"] and sum(worker["test_examples"] for worker in workers) == 128
    assert record["launch_to_first_batch_seconds"] < record["total_time_seconds"]
    # Its column in the comparison, and Ray's share of its throughput.
    assert comparison["ray_vs_tensorflow_alone"] is None  # one epoch: no run settled
    assert "Ray vs TensorFlow alone:   not compared: " in smoke_run["stdout"]
    assert "TensorFlow alone" in smoke_run["stdout"].split("3/3 Comparison")[1].splitlines()[1]
    assert "tensorflow-alone worker 1/2 epoch 1: " in smoke_run["stdout"]
    report = (smoke_run["run_dir"] / "REPORT.md").read_text()
    assert "## What Ray costs on top of TensorFlow" in report and "| TensorFlow alone, 2 workers |" in report
