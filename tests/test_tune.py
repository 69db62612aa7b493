"""The Ray Tune search (lesson/ray_tune.py, scripts/run-tune.sh, analysis/tune_report.py): its
bad input refused before Ray starts, the report's arithmetic on a record written by hand, and
one real smoke search of every way on the session's local cluster (a 0-CPU head and two 1-CPU
worker nodes), with a configuration that fails in one way and not in the others."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import PYTHON, REPO_ROOT, actors_started, interruptible, run

RUN_TUNE = str(REPO_ROOT / "scripts" / "run-tune.sh")


@pytest.mark.parametrize("flags, message", [
    (["--ways", "plain,serial"], "--ways (WAYS) 'plain,serial' must list some of data-parallel, trainer-per-trial, "
                                 "plain, plain-asha, each once."),
    (["--learning-rates", "0.001,fast"], "--learning-rates (LEARNING_RATES) must be numbers greater than 0, "
                                         "separated by commas; got '0.001,fast'."),
    (["--global-batches", "64,64"], "--global-batches (GLOBAL_BATCHES) lists a value twice: '64,64'."),
    (["--global-batches", "64,0"], "--global-batches (GLOBAL_BATCHES) must be whole numbers greater than 0"),
    (["--address", "127.0.0.1:1"], "No Ray cluster answers at 127.0.0.1:1"),
])
def test_a_bad_search_setting_is_refused_in_words_before_ray_starts_and_writes_nothing(tmp_path, flags, message):
    started = time.time()
    finished = run([PYTHON, "-m", "lesson.ray_tune", "--smoke-test", "--results-dir", str(tmp_path / "run"), *flags],
                   timeout=120)
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert message in finished.stderr
    assert "Started a local Ray instance" not in finished.stderr and time.time() - started < 60
    assert not (tmp_path / "run").exists()


def test_run_tunes_help_gives_the_search_defaults_of_the_lesson():
    from lesson import ray_tune

    header = (REPO_ROOT / "scripts" / "run-tune.sh").read_text()
    assert f"#   WAYS={','.join(ray_tune.WAYS)}   " in header
    assert f"#   LEARNING_RATES={ray_tune.LEARNING_RATES}   " in header
    assert f"#   GLOBAL_BATCHES={ray_tune.GLOBAL_BATCHES}   " in header


def trial(config, status, accuracies, ended, started=0.0):
    epochs = [{"epoch": index + 1, "val_accuracy": accuracy, "val_loss": 1.0, "seconds": started + 10 * (index + 1)}
              for index, accuracy in enumerate(accuracies)]
    return {"config": dict(zip(("learning_rate", "global_batch_size"), config)), "status": status,
            "epochs": epochs, "error": "boom" if status == "error" else None, "started_seconds": started,
            "ended_seconds": ended}


def test_a_global_batch_the_data_parallel_workers_cannot_split_is_refused_before_they_start():
    from lesson import recipe as recipes
    from lesson.ray_tune import check_configuration

    recipe = recipes.Recipe.resolve("smoke")
    check_configuration({"global_batch_size": 3}, recipe, workers=1)  # one process takes any batch
    with pytest.raises(ValueError, match="global batch 3 does not split evenly between 2 workers"):
        check_configuration({"global_batch_size": 3}, recipe, workers=2)


def test_the_report_finds_each_ways_best_and_its_time_to_a_configuration_within_one_point_of_the_best():
    from analysis.tune_report import summarise, verdict

    data = {"recipe": {"epochs": 2}, "ways": [
        {"way": "data-parallel", "status": "finished", "wall_seconds": 100.0, "cpu_utilisation": 0.9, "trials": {
            "a": trial((0.001, 64), "completed", [0.5, 0.70], ended=40.0),
            "b": trial((0.002, 64), "completed", [0.6, 0.80], ended=95.0)}},
        {"way": "plain-asha", "status": "finished", "wall_seconds": 50.0, "cpu_utilisation": 0.99, "trials": {
            # 0.795 is within 1 point of the best (0.80): found at 30 s, before the best itself.
            "a": trial((0.001, 64), "completed", [0.5, 0.795], ended=30.0),
            "b": trial((0.002, 64), "stopped early", [0.2], ended=12.0),
            "c": trial((0.002, 3), "error", [], ended=2.0)}},
    ]}
    rows, best = summarise(data)
    assert best == 0.80
    first, second = rows
    assert (first["best_config"], first["best_accuracy"]) == ({"learning_rate": 0.002, "global_batch_size": 64}, 0.80)
    assert first["seconds_to_within_1_point"] == 95.0 and first["trials_per_hour"] == 72.0
    assert (second["completed"], second["stopped_early"], second["errors"]) == (1, 1, ["boom"])
    assert second["best_accuracy"] == 0.795 and second["seconds_to_within_1_point"] == 30.0
    assert second["trials_per_hour"] == 144.0  # the two that ended, not the failed one
    assert verdict(rows, best) == ("**plain-asha** found a configuration within 1 point of the best test accuracy "
                                   "(0.8000) first, 30.0 s after its search began; data-parallel 65.0 s later "
                                   "(3.17x).")


def test_a_search_stopped_while_a_trial_waits_for_cpus_records_it_as_not_started(tmp_path):
    from types import SimpleNamespace

    from harness.tune_record import SearchRecord

    record = object.__new__(SearchRecord)  # its settings are checked elsewhere; this is the bookkeeping
    record.recipe, record.ways, record.path = SimpleNamespace(epochs=2), ["plain"], str(tmp_path / "tune_results.json")
    record.data = {"status": "running", "ways": []}
    first, second = (SimpleNamespace(trial_id=name, status="PENDING", config={"learning_rate": rate,
                                                                               "global_batch_size": 64})
                     for name, rate in (("a", 0.001), ("b", 0.002)))
    with pytest.raises(KeyboardInterrupt), record.way("plain") as (log,):
        log.on_step_end(iteration=1, trials=[first, second])
        assert json.loads((tmp_path / "tune_results.json").read_text())["ways"][0]["trials"]["b"]["status"] == "pending"
        first.status = "RUNNING"
        log.on_trial_start(iteration=2, trials=[first, second], trial=first)
        log.on_step_end(iteration=3, trials=[first, second])
        raise KeyboardInterrupt
    trials = json.loads((tmp_path / "tune_results.json").read_text())["ways"][0]["trials"]
    assert trials["a"]["status"] == "interrupted" and trials["a"]["started_seconds"] is not None
    assert trials["b"]["status"] == "not started" and trials["b"]["started_seconds"] is None


@pytest.fixture(scope="module")
def tune_smoke(local_cluster, tmp_path_factory):
    """One `./scripts/run-tune.sh --smoke-test` of every way on the session's cluster: 2 epochs,
    global batches 64 and 512 (more than the 256 training images: it fails in every way, at once)."""
    results_dir = tmp_path_factory.mktemp("tune") / "results"
    env = {**local_cluster["env"], "RESULTS_DIR": str(results_dir), "TARGET": "local", "EPOCHS": "2",
           "LEARNING_RATES": "0.002", "GLOBAL_BATCHES": "64,512"}
    finished = run([RUN_TUNE, "--smoke-test"], env=env, timeout=900)
    run_dir = (results_dir / "latest").resolve()
    return {"finished": finished, "output": finished.stdout + finished.stderr, "run_dir": run_dir}


@pytest.mark.xdist_group("local_cluster")
def test_a_smoke_search_runs_every_way_on_the_same_grid_and_records_every_trials_epochs(tune_smoke, local_cluster):
    assert tune_smoke["finished"].returncode == 0, tune_smoke["output"][-6000:]
    # A Ray Train trial keeps Ray Train's placement-group cleaner: its driver, the search, goes on after it
    # (lesson/workarounds.py section 9; the cluster's other runs start none).
    assert actors_started(local_cluster["cluster_dir"]).get("PlacementGroupCleaner", 0) >= 2
    record = json.loads((tune_smoke["run_dir"] / "tune_results.json").read_text())
    assert record["status"] == "finished" and record["recipe"]["epochs"] == 2
    assert [way["way"] for way in record["ways"]] == ["data-parallel", "trainer-per-trial", "plain", "plain-asha"]
    for way in record["ways"]:
        assert way["status"] == "finished" and 0 < way["wall_seconds"] and 0 < way["cpu_utilisation"] <= 1
        trials = {trial["config"]["global_batch_size"]: trial for trial in way["trials"].values()}
        assert sorted(trials) == [64, 512] and {t["config"]["learning_rate"] for t in trials.values()} == {0.002}
        trial = trials[64]
        assert trial["status"] == "completed" and [epoch["epoch"] for epoch in trial["epochs"]] == [1, 2], trial
        seconds = [epoch["seconds"] for epoch in trial["epochs"]]
        assert seconds == sorted(seconds) and seconds[-1] <= trial["ended_seconds"] <= way["wall_seconds"]
        assert all(0 <= epoch["val_accuracy"] <= 1 for epoch in trial["epochs"])
    # The same configuration, seed and data train the same model in one process, with Ray Train or
    # without, whether ASHA watches or not; on two workers the shards change the shuffles.
    finals = {way["way"]: [t for t in way["trials"].values() if t["status"] == "completed"][0]["epochs"]
              for way in record["ways"]}
    accuracies = {way: [epoch["val_accuracy"] for epoch in epochs] for way, epochs in finals.items()}
    assert accuracies["trainer-per-trial"] == accuracies["plain"] == accuracies["plain-asha"]


@pytest.mark.xdist_group("local_cluster")
def test_a_failing_trial_is_recorded_with_its_reason_and_the_search_goes_on(tune_smoke):
    assert tune_smoke["finished"].returncode == 0, tune_smoke["output"][-6000:]
    record = json.loads((tune_smoke["run_dir"] / "tune_results.json").read_text())
    report = (tune_smoke["run_dir"] / "TUNE.md").read_text()
    for way in record["ways"]:
        trials = {trial["config"]["global_batch_size"]: trial for trial in way["trials"].values()}
        assert trials[512]["status"] == "error" and trials[512]["epochs"] == [], way["way"]
        assert trials[512]["error"] == "ValueError: global batch 512 is larger than the 256 training images"
        assert trials[64]["status"] == "completed"
        assert f"- {way['way']}: ValueError: global batch 512 is larger than the 256 training images" in report
    assert report.count(" | 2 (1 / 0 / 1) | ") == 4


@pytest.mark.xdist_group("local_cluster")
def test_the_smoke_searchs_report_names_the_machine_the_best_configuration_and_the_way_that_found_it_first(tune_smoke):
    assert tune_smoke["finished"].returncode == 0, tune_smoke["output"][-6000:]
    run_dir = tune_smoke["run_dir"]
    assert run_dir.name.endswith("-local-tune-smoke")
    report = (run_dir / "TUNE.md").read_text()
    for way in ("data-parallel", "trainer-per-trial", "plain", "plain-asha"):
        assert f"| {way} | " in report
    assert "Every way had 2 CPUs (2 workers x 1)" in report and "logical cores" in report
    assert "found a configuration within 1 point of the best test accuracy" in report
    assert "BATCH_SIZE=" in report and "./scripts/run-benchmark.sh" in report
    for plot in ("tune_curves.png", "tune_wall_times.png"):
        assert (run_dir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "found a configuration within 1 point" in tune_smoke["output"]
    assert "Using the running Ray cluster" in tune_smoke["output"], "RAY_ADDRESS's cluster is used and left"


@pytest.mark.xdist_group("local_cluster")
def test_a_search_asking_for_more_cpus_than_the_cluster_has_fails_fast_in_words(local_cluster, tmp_path):
    started = time.time()
    finished = run([PYTHON, "-m", "lesson.ray_tune", "--smoke-test", "--num-workers", "3",
                    "--results-dir", str(tmp_path)], env=local_cluster["env"], timeout=180)
    assert finished.returncode == 2, finished.stderr[-3000:]
    assert "The cluster cannot place 3 workers x 1 CPU(s)" in finished.stderr
    assert time.time() - started < 60
    assert json.loads((tmp_path / "tune_results.json").read_text())["ways"] == []


@pytest.mark.xdist_group("local_cluster")
def test_ctrl_c_stops_every_trial_and_the_record_says_how_far_the_search_got(local_cluster, tmp_path):
    process = subprocess.Popen([PYTHON, "-m", "lesson.ray_tune", "--smoke-test", "--epochs", "2", "--ways", "plain",
                                "--results-dir", str(tmp_path)], cwd=REPO_ROOT, env={**os.environ, **local_cluster["env"]},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               preexec_fn=interruptible)
    output = []
    try:
        for line in process.stdout:
            output.append(line)
            if "[tune] plain: learning rate" in line:  # one trial has ended, the other runs or waits for CPUs
                os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the foreground group
                break
        output.append(process.communicate(timeout=120)[0])
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, "".join(output)[-4000:]
    assert "ray_tune: interrupted: tune_results.json says how far the search got." in "".join(output)
    record = json.loads((tmp_path / "tune_results.json").read_text())
    assert record["status"] == "interrupted" and record["ways"][0]["status"] == "interrupted"
    statuses = sorted(trial["status"] for trial in record["ways"][0]["trials"].values())
    assert statuses in (["completed", "interrupted"], ["completed", "completed"],
                        ["completed", "not started"]), statuses
    waiting = [trial for trial in record["ways"][0]["trials"].values() if trial["status"] == "not started"]
    assert all(trial["started_seconds"] is None and not trial["epochs"] for trial in waiting), waiting
    deadline = time.time() + 30  # the driver's trial actors die with it
    while subprocess.run(["pgrep", "-f", "ray::ImplicitFunc"], capture_output=True).returncode == 0:
        assert time.time() < deadline, "a trial's process outlived the search"
        time.sleep(1)
