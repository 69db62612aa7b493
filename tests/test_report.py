"""analysis/report.py and the modules it assembles (run_folder.py, targets.py, tables.py, plots.py):
the targets' verdicts, the table, REPORT.md with its plots, and its errors."""

import json
import os

import numpy as np
import pytest

from conftest import PYTHON, run
from analysis import report, run_folder, tables, targets
from lesson import data

TEST_SIZE = 200
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def labels():
    return data.load_dataset("synthetic", 1, TEST_SIZE, seed=42).y_test


def make_record(*, workers=0, images_per_second=50.0, accuracy=0.80, epochs=3, global_batch=64,
                first_batch=None, total_time=None, cores=4):
    """A run record as the entry points write it; workers=0 is the baseline.

    The predictions are the true synthetic labels with some changed, so that they give
    exactly `accuracy` (rounded to a whole number of test examples).
    """
    predictions = labels().copy()
    wrong = TEST_SIZE - round(accuracy * TEST_SIZE)
    predictions[:wrong] = (predictions[:wrong] + 1) % 10
    samples = 4096
    epoch_seconds = samples / images_per_second
    record = {
        "training_type": "ray_train" if workers else "baseline", "dataset": "synthetic",
        "train_size": samples, "test_size": TEST_SIZE, "epochs_completed": epochs, "epochs_requested": epochs,
        "batch_size_per_worker": global_batch // max(workers, 1), "global_batch_size": global_batch,
        "cpus_per_worker": 1, "num_workers": max(workers, 1), "samples_per_epoch": samples,
        "learning_rate": 0.001, "seed": 42, "startup_seconds": 30.0 if workers else 6.0,
        "train_time_seconds": epoch_seconds * epochs,
        "total_time_seconds": total_time or epoch_seconds * epochs + (60.0 if workers else 20.0),
        "epoch_times_seconds": [epoch_seconds * 1.1] + [epoch_seconds] * (epochs - 1),
        "images_per_second": images_per_second,
        # A learning curve that levels off: the third epoch adds under 3 points (recipe_checks.py).
        "history": [{"epoch": epoch, "seconds": epoch_seconds, "loss": 2.0 / epoch, "accuracy": 0.82 - 0.2 / epoch ** 2,
                     "val_loss": 2.2 / epoch, "val_accuracy": 0.8 - 0.2 / epoch ** 2} for epoch in range(1, epochs + 1)],
        "test_accuracy": float((predictions == labels()).mean()), "test_loss": 0.5,
        "test_predictions": [int(label) for label in predictions],
        "versions": {"python": "3.11.7", "tensorflow": "2.21.0", "keras": "2.21.0", "numpy": "2.4.6",
                     "ray": "2.60.0"},
        "host": {"hostname": "laptop", "platform": "Linux-test", "cpu_model": "Test CPU 9000",
                 "logical_cores": cores, "memory_gib": 23.5},
        "command": f"python -m lesson.{'ray_training' if workers else 'baseline_training'} --test",
        "step_breakdown": breakdown(allreduce=0.15 if workers else 0.0, allreduce_cpu=0.06 if workers else 0.0),
    }
    if workers:
        record.update(
            trainer_start_to_first_batch_seconds=10.0 if first_batch is None else first_batch,
            weights_identical=True,
            cluster={"nodes": [{"node_id": "head", "address": "127.0.0.1", "cpus": 0.0}]
                     + [{"node_id": f"n{rank}", "address": "127.0.0.1", "cpus": 1.0} for rank in range(workers)],
                     "total_cpus": float(workers)},
            workers=[{"rank": rank, "node_id": f"n{rank}", "hostname": "laptop"} for rank in range(workers)])
    return record


def breakdown(allreduce, allreduce_cpu):
    """A step_breakdown as step_timing.summarize writes it (seconds per step)."""
    per_step = {"input": 0.01, "compute": 1.1, "allreduce": allreduce, "allreduce_cpu": allreduce_cpu,
                "optimizer": 0.02, "other": 0.005}
    per_step["step"] = sum(per_step[part] for part in ("input", "compute", "allreduce", "optimizer", "other"))
    return {"steps": 64, "seconds_per_step": per_step,
            "share_of_step": {part: per_step[part] / per_step["step"] for part in per_step if part != "step"},
            "unaccounted_share": per_step["other"] / per_step["step"]}


def write_pair(folder, baseline, ray_run):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "baseline_results.json").write_text(json.dumps(baseline))
    (folder / f"ray_results_{ray_run['num_workers']}workers.json").write_text(json.dumps(ray_run))
    return folder


def write_sweep(run_dir, one_worker_ratio=0.97, two_worker_ratio=1.85, first_batch=10.0):
    write_pair(run_dir / "workers-1", make_record(global_batch=64),
               make_record(workers=1, global_batch=64, images_per_second=50.0 * one_worker_ratio,
                           first_batch=first_batch))
    write_pair(run_dir / "workers-2", make_record(global_batch=128, accuracy=0.80),
               make_record(workers=2, global_batch=128, images_per_second=50.0 * two_worker_ratio,
                           accuracy=0.805, first_batch=first_batch))
    return run_dir


def verdicts(run_dir):
    return {target["target"]: (target["result"], target["measured"])
            for target in targets.evaluate_targets(run_folder.find_pairs(str(run_dir)))}


def test_every_target_passes_when_each_measured_ratio_meets_it(tmp_path):
    found = verdicts(write_sweep(tmp_path))
    assert found["Ray 1 worker: steady-state throughput >= 0.95x plain Keras"] == ("PASS", "0.97 (0.97x, slower)")
    result, measured = found["Ray 2 workers: steady-state throughput >= 1.80x the baseline (efficiency >= 0.90)"]
    assert result == "PASS"
    assert measured.startswith("1.85x faster, efficiency 0.93; end to end ")
    assert found["Ray 2 workers: trainer start to first batch <= 15 s"] == ("PASS", "10.0 s")
    assert found["Ray 2 workers: test accuracy at most 1 point below the baseline's"] == (
        "PASS", "+0.50 points (0.8050 vs 0.8000, 3 epochs each)")


def test_the_targets_follow_the_worker_count_and_the_cores_of_the_machine(tmp_path):
    for workers, ratio, expected in ((4, 3.40, "3.40x"), (8, 6.40, "6.40x")):
        folder = write_pair(tmp_path / str(workers), make_record(global_batch=64 * workers, cores=16),
                            make_record(workers=workers, global_batch=64 * workers, cores=16,
                                        images_per_second=50.0 * ratio))
        target = (f"Ray {workers} workers: steady-state throughput >= {expected} the baseline "
                  f"(efficiency >= {ratio / workers:.2f})")
        assert verdicts(folder)[target][0] == "PASS"
    # 2 workers on 2 cores share them with Ray's own processes: 1.70x, and the first batch in 10 s.
    two_cores = write_pair(tmp_path / "two-cores", make_record(global_batch=128, cores=2),
                           make_record(workers=2, global_batch=128, cores=2, images_per_second=50.0 * 1.69,
                                       first_batch=10.5))
    found = verdicts(two_cores)
    assert found["Ray 2 workers: steady-state throughput >= 1.70x the baseline (efficiency >= 0.85)"][0] == "FAIL"
    assert found["Ray 2 workers: trainer start to first batch <= 10 s"] == ("FAIL", "10.5 s")


def test_values_just_short_of_a_target_fail_and_a_slower_run_is_never_called_faster(tmp_path):
    run_dir = write_sweep(tmp_path, one_worker_ratio=0.94, two_worker_ratio=1.79, first_batch=15.1)
    found = verdicts(run_dir)
    assert found["Ray 1 worker: steady-state throughput >= 0.95x plain Keras"] == ("FAIL", "0.94 (0.94x, slower)")
    result, measured = found["Ray 2 workers: steady-state throughput >= 1.80x the baseline (efficiency >= 0.90)"]
    assert result == "FAIL" and measured.startswith("1.79x faster, efficiency 0.90")
    assert found["Ray 1 worker: trainer start to first batch <= 15 s"] == ("FAIL", "15.1 s")
    printed = targets.format_targets(targets.evaluate_targets(run_folder.find_pairs(str(run_dir))))
    assert "FAIL  Ray 1 worker: steady-state throughput >= 0.95x plain Keras: 0.94 (0.94x, slower)" in printed
    assert "0.94x faster" not in printed


def test_values_exactly_at_a_target_pass(tmp_path):
    run_dir = write_sweep(tmp_path, one_worker_ratio=0.95, two_worker_ratio=1.80, first_batch=15.0)
    pair = run_folder.find_pairs(str(run_dir))[1]
    pair.ray["test_accuracy"] = pair.baseline["test_accuracy"] - 0.01
    pair.comparison["accuracy_delta"] = -0.01
    assert {target["result"] for target in targets.evaluate_targets(run_folder.find_pairs(str(run_dir)))} == {"PASS"}
    assert targets.accuracy_target(pair)["result"] == "PASS"


def test_an_accuracy_more_than_a_point_lower_fails_and_a_higher_one_passes_and_says_why(tmp_path):
    found = {}
    for ray_accuracy in (0.78, 0.83):
        folder = write_pair(tmp_path / str(ray_accuracy), make_record(global_batch=128, accuracy=0.80),
                            make_record(workers=2, global_batch=128, accuracy=ray_accuracy))
        found[ray_accuracy] = verdicts(folder)["Ray 2 workers: test accuracy at most 1 point below the baseline's"]
    assert found[0.78] == ("FAIL", "-2.00 points (0.7800 vs 0.8000, 3 epochs each)")
    result, measured = found[0.83]
    assert result == "PASS" and measured.startswith("+3.00 points (0.8300 vs 0.8000, 3 epochs each); higher: ")


def test_accuracy_is_not_judged_when_the_runs_differ_in_epochs(tmp_path):
    folder = write_pair(tmp_path, make_record(global_batch=128, epochs=3),
                        make_record(workers=2, global_batch=128, epochs=2))
    assert verdicts(folder)["Ray 2 workers: test accuracy at most 1 point below the baseline's"] == (
        "n/a", "not comparable: the runs differ in epochs_completed")


def test_targets_of_configurations_not_run_are_marked_not_measured(tmp_path):
    folder = write_pair(tmp_path, make_record(global_batch=128), make_record(workers=2, global_batch=128))
    found = verdicts(folder)
    assert found["Ray 1 worker: steady-state throughput >= 0.95x plain Keras"] == (
        "n/a", "not measured in this run (needs a 1-worker run)")
    one_worker = write_pair(tmp_path / "one", make_record(global_batch=64), make_record(workers=1, global_batch=64))
    assert verdicts(one_worker)[
        "Ray 2 workers: steady-state throughput >= 1.80x the baseline (efficiency >= 0.90)"][0] == "n/a"


def test_the_table_puts_each_ray_run_beside_its_equal_batch_baseline(tmp_path):
    table = tables.results_table(run_folder.find_pairs(str(write_sweep(tmp_path))))
    assert list(table.index) == ["Plain Keras, batch 64", "Ray Train, 1 worker",
                                 "Plain Keras, batch 128", "Ray Train, 2 workers"]
    assert list(table["Global batch"]) == [64, 64, 128, 128]
    assert table.loc["Ray Train, 2 workers", "Speedup (images/s)"] == pytest.approx(1.85)
    assert table.loc["Ray Train, 2 workers", "Efficiency"] == pytest.approx(0.925)
    assert table.loc["Ray Train, 2 workers", "Accuracy vs baseline (points)"] == pytest.approx(0.5)
    assert np.isnan(table.loc["Plain Keras, batch 128", "Speedup (images/s)"])


def test_a_sweep_report_has_every_section_the_per_class_results_and_the_plots(tmp_path):
    run_dir = write_sweep(tmp_path / "20261125-180000-sweep")
    finished = run([PYTHON, "-m", "analysis.report", "--run-dir", str(run_dir)], timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "PASS  Ray 2 workers: steady-state throughput >= 1.80x" in finished.stdout
    assert f"Report: {run_dir}/REPORT.md" in finished.stdout
    text = (run_dir / "REPORT.md").read_text()
    assert text.startswith("# Benchmark report: 20261125-180000-sweep\n")
    for section in ("## Targets", "## Machine", "## Versions", "## Settings", "### How the baselines were chosen",
                    "## Results", "## Where each step's time goes", "## When Ray pays off", "## Learning curves",
                    "## Per-class results"):
        assert section in text, section
    # The step breakdown of each configuration, in milliseconds per step.
    assert "| Ray Train, 2 workers | 128 | 10 | 1100 | 150 (60) | 20 | 5 | 1285 | 0.4% |" in text
    assert "| Plain Keras, batch 128 | 128 | 10 | 1100 | 0 (0) | 20 | 5 | 1135 | 0.4% |" in text
    assert "- Ray Train, 2 workers: fixed overhead " in text and "beat one process end to end once" in text
    assert "- CPU: Test CPU 9000, 4 logical cores" in text and "- Memory: 23.5 GiB" in text
    assert "Python 3.11.7, TensorFlow 2.21.0, tf-keras 2.21.0, Ray 2.60.0" in text
    assert "| Ray Train, 2 workers | 2 | 128 |" in text
    for label in ("Plain Keras, batch 64", "Ray Train, 1 worker", "Plain Keras, batch 128", "Ray Train, 2 workers"):
        assert f"### {label}\n\n```\n" in text, label
    assert text.count("Confusion matrix (rows: true class, columns: predicted class):") == 4
    assert "macro avg" in text
    for picture in ("speedup.png", "epoch_times.png", "break_even.png", "learning_curves_1workers.png",
                    "learning_curves_2workers.png"):
        assert f"]({picture})" in text
        assert (run_dir / picture).read_bytes().startswith(PNG_MAGIC), picture


def test_the_confusion_matrix_counts_every_test_example_once(tmp_path):
    record = make_record(accuracy=0.75)
    section = tables.per_class_section("Plain Keras", record, labels())
    rows = [line for line in section.splitlines() if line.startswith("| class ")]
    counts = [[int(cell) for cell in row.strip("|").split("|")[1:]] for row in rows]
    assert len(counts) == 10 and sum(map(sum, counts)) == TEST_SIZE
    assert sum(counts[index][index] for index in range(10)) == 150


def test_a_single_comparison_folder_gets_the_same_report(tmp_path):
    folder = write_pair(tmp_path, make_record(global_batch=128), make_record(workers=2, global_batch=128))
    path, pairs, _ = report.write_report(str(folder))
    assert len(pairs) == 1 and path == str(folder / "REPORT.md")
    assert (folder / "learning_curves_2workers.png").read_bytes().startswith(PNG_MAGIC)


def test_labels_that_do_not_match_the_recorded_accuracy_are_reported_not_used(tmp_path):
    baseline = make_record(global_batch=128)
    baseline["test_accuracy"] = 0.5  # not what the predictions give on the rebuilt labels
    folder = write_pair(tmp_path, baseline, make_record(workers=2, global_batch=128))
    report.write_report(str(folder))
    text = (folder / "REPORT.md").read_text()
    assert "### Plain Keras, batch 128\n\nNot available: The rebuilt synthetic test labels do not match" in text
    assert text.count("Confusion matrix") == 1


@pytest.mark.parametrize("layout, message", [
    ("empty", "holds no results"),
    ("two ray runs", "must hold exactly one ray_results_<N>workers.json"),
    ("missing", "is not a folder"),
])
def test_a_folder_without_exactly_one_comparison_is_refused_with_a_clear_message(tmp_path, layout, message):
    run_dir = tmp_path / "run"
    if layout != "missing":
        run_dir.mkdir()
    if layout == "two ray runs":
        write_pair(run_dir, make_record(), make_record(workers=2, global_batch=64))
        (run_dir / "ray_results_1workers.json").write_text(json.dumps(make_record(workers=1)))
    finished = run([PYTHON, "-m", "analysis.report", "--run-dir", str(run_dir)], timeout=60)
    assert finished.returncode == 2
    assert finished.stderr.startswith("report: error: ") and message in finished.stderr
    assert not (run_dir / "REPORT.md").exists()


def test_the_machine_section_says_when_the_workers_asked_for_more_cpus_than_cores(tmp_path):
    """ALLOW_OVERSUBSCRIBE=1 lets 2 workers x 1 CPU run on 1 core: REPORT.md must say so."""
    fair = write_pair(tmp_path / "fair", make_record(cores=2), make_record(workers=2, cores=2))
    crowded = write_pair(tmp_path / "crowded", make_record(cores=1), make_record(workers=2, cores=1))
    assert not any("Oversubscribed" in line for line in report._machine_section(run_folder.find_pairs(str(fair))))
    lines = report._machine_section(run_folder.find_pairs(str(crowded)))
    assert any("**Oversubscribed**: 2 workers x 1 CPU(s) asked for 2 CPUs on 1 logical cores" in line
               for line in lines), lines


def test_the_levers_table_shows_tensorflow_alone_between_the_ceiling_and_ray(tmp_path):
    """A levers run folder with the baseline, tensorflow-alone and ray rows (the committed
    quick-start run's files): the table orders them so and labels the control."""
    import shutil

    from analysis import levers
    from harness import results, tensorflow_alone

    quickstart = os.path.join(results.REPO_ROOT, "docs", "results", "quickstart")
    for row, file in (("baseline", results.BASELINE_FILE), ("tensorflow-alone", tensorflow_alone.results_file(2)),
                      ("ray", results.ray_file(2))):
        os.makedirs(tmp_path / row)
        shutil.copy(os.path.join(quickstart, file), tmp_path / row / file)
    rows = levers.table_rows(levers.load_rows(str(tmp_path)))
    assert [row["row"] for row in rows] == ["plain Keras, batch 128, 1 CPU", "TensorFlow alone, 2 processes, no Ray",
                                            "Ray 2 workers: default"]
    alone = rows[1]
    with open(os.path.join(quickstart, tensorflow_alone.results_file(2)), encoding="utf-8") as source:
        record = json.load(source)
    assert alone["images_per_second"] == record["images_per_second"]
    assert alone["first_batch"] == record["launch_to_first_batch_seconds"]
    assert "| TensorFlow alone, 2 processes, no Ray |" in levers.markdown(rows)


def test_a_run_too_short_to_settle_gets_a_report_that_says_so_instead_of_a_speedup(tmp_path):
    """2 epochs: no steady state, so no throughput speedup, break-even or throughput verdict;
    the per-epoch table, the time figures and the plots are still there."""
    folder = write_pair(tmp_path, make_record(global_batch=128, epochs=2),
                        make_record(workers=2, global_batch=128, epochs=2, images_per_second=90.0))
    report.write_report(str(folder))
    text = (folder / "REPORT.md").read_text()
    assert ("| Ray 2 workers: steady-state throughput >= 1.80x the baseline (efficiency >= 0.90) | not measured: "
            "the baseline and Ray Train had not settled **Too short**: the baseline and Ray Train: 2 epochs, 3 at "
            "least to settle | n/a |") in text
    per_epoch = text.split("## Per-epoch speed", 1)[1].split("\n## ", 1)[0]
    assert "| Epoch | Plain Keras, batch 128 | Ray Train, 2 workers |" in per_epoch
    rows = [line for line in per_epoch.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    # No epoch counted, so none in bold.
    assert rows == ["| 1 | 45.5 (90.1 s) | 81.8 (50.1 s) |", "| 2 | 50.0 (81.9 s) | 90.0 (45.5 s) |"]
    assert "- Ray Train, 2 workers: too short to settle with 2 epochs" in per_epoch
    assert "- Ray Train, 2 workers: not computed: the baseline and Ray Train had not settled" in text
    for picture in ("epoch_times.png", "break_even.png", "speedup.png"):
        assert (folder / picture).read_bytes().startswith(PNG_MAGIC), picture
