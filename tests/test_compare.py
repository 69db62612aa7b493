"""The comparison's arithmetic and wording, and its errors on missing or malformed files."""

import json

import pytest

from analysis import compare
from harness import results
from conftest import PYTHON, run


def make_run(training_type, train_time, total_time, images_per_second, accuracy, workers=1,
             global_batch=128, epoch_times=None):
    """A run record; its epochs run at `images_per_second` (the steady-state rule reads the
    throughput from them), unless `epoch_times` are given."""
    return {
        "training_type": training_type, "dataset": "synthetic", "train_size": 4096, "test_size": 1024,
        "epochs_completed": 3, "batch_size_per_worker": global_batch // workers,
        "global_batch_size": global_batch, "cpus_per_worker": 1, "num_workers": workers,
        "samples_per_epoch": 4096, "startup_seconds": 5.0, "train_time_seconds": train_time,
        "total_time_seconds": total_time, "epoch_times_seconds": epoch_times or [4096 / images_per_second] * 3,
        "images_per_second": images_per_second, "test_accuracy": accuracy, "test_loss": 0.5,
        "versions": {}, "host": {},
    }


def test_comparison_computes_speedup_efficiency_throughput_and_accuracy_delta():
    baseline = make_run("baseline", train_time=240.0, total_time=260.0, images_per_second=50.0, accuracy=0.80)
    ray_run = make_run("ray_train", train_time=150.0, total_time=200.0, images_per_second=80.0,
                       accuracy=0.79, workers=2)
    comparison = compare.compare(baseline, ray_run)
    assert comparison["num_workers"] == 2
    assert comparison["speedup"] == pytest.approx(1.6)
    assert comparison["speedup_end_to_end"] == pytest.approx(1.3)
    assert comparison["scaling_efficiency"] == pytest.approx(0.8)
    assert comparison["throughput_ratio"] == pytest.approx(1.6)
    assert comparison["accuracy_delta"] == pytest.approx(-0.01)
    assert comparison["warnings"] == []
    table = compare.format_table(comparison)
    assert "Speedup (throughput):      1.60x faster, scaling efficiency 0.80 (/ 2 workers" in table
    assert "-1.00 points" in table


def test_the_break_even_follows_from_each_runs_fixed_overhead_and_the_throughput_ratio():
    # 3 epochs of 4096 images: the baseline trains 245.76 s at 50 img/s and totals 260 s
    # (14.24 s of fixed overhead); Ray trains 153.6 s at 80 img/s and totals 200 s (46.4 s).
    baseline = make_run("baseline", train_time=240.0, total_time=260.0, images_per_second=50.0, accuracy=0.8)
    ray_run = make_run("ray_train", train_time=150.0, total_time=200.0, images_per_second=80.0,
                       accuracy=0.8, workers=2)
    comparison = compare.compare(baseline, ray_run)
    assert comparison["fixed_overhead_seconds"]["baseline"] == pytest.approx(14.24)
    assert comparison["fixed_overhead_seconds"]["ray"] == pytest.approx(46.4)
    # (46.4 - 14.24) / (1 - 1 / 1.6) = 85.76 s of baseline training, where both lines cross.
    seconds = comparison["break_even_baseline_training_seconds"]
    assert seconds == pytest.approx(85.76)
    assert compare.end_to_end_seconds(46.4, 1.6, seconds) == pytest.approx(14.24 + seconds)
    assert ("2 Ray workers beat one process end to end once the baseline trains for more than 86 s"
            in compare.format_table(comparison))
    # A Ray run that starts as fast as the baseline pays off at once.
    ray_run["total_time_seconds"] = 153.6 + 10.0
    assert compare.compare(baseline, ray_run)["break_even_baseline_training_seconds"] == 0


def test_a_slower_ray_run_is_called_slower_never_faster():
    baseline = make_run("baseline", train_time=100.0, total_time=110.0, images_per_second=50.0, accuracy=0.8)
    ray_run = make_run("ray_train", train_time=125.0, total_time=160.0, images_per_second=40.0,
                       accuracy=0.8, workers=2)
    comparison = compare.compare(baseline, ray_run)
    assert comparison["speedup"] == pytest.approx(0.8)
    assert comparison["scaling_efficiency"] == pytest.approx(0.4)
    assert comparison["break_even_baseline_training_seconds"] is None
    table = compare.format_table(comparison)
    assert "0.80x, slower" in table
    assert "Break-even:                never: 2 Ray workers train no faster than one process here" in table
    assert "faster," not in table and "x faster" not in table


def test_unequal_work_or_recipes_are_flagged():
    baseline = make_run("baseline", 100.0, 110.0, 50.0, 0.8, global_batch=64)
    ray_run = make_run("ray_train", 60.0, 80.0, 90.0, 0.8, workers=2, global_batch=128)
    ray_run["samples_per_epoch"] = 4000
    warnings = compare.compare(baseline, ray_run)["warnings"]
    assert any("different amounts of work" in warning for warning in warnings)
    assert any("Different global batches" in warning for warning in warnings)


def test_compare_cli_writes_comparison_json(tmp_path):
    baseline = make_run("baseline", 240.0, 260.0, 50.0, 0.80)
    ray_run = make_run("ray_train", 150.0, 200.0, 80.0, 0.79, workers=2)
    (tmp_path / results.BASELINE_FILE).write_text(json.dumps(baseline))
    (tmp_path / results.ray_file(2)).write_text(json.dumps(ray_run))
    finished = run([PYTHON, "-m", "analysis.compare", "--results-dir", str(tmp_path), "--num-workers", "2"])
    assert finished.returncode == 0, finished.stderr
    written = json.loads((tmp_path / results.COMPARISON_FILE).read_text())
    assert written["speedup"] == pytest.approx(1.6)
    assert written["baseline"]["test_accuracy"] == 0.80 and written["ray"]["num_workers"] == 2
    assert "Speedup (training time):   1.60x faster" in finished.stdout


@pytest.mark.parametrize("content, message", [
    (None, "does not exist. Run the training"),
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "does not hold a results object"),
    ('{"training_type": "baseline"}', "lacks dataset"),
])
def test_compare_cli_explains_missing_or_malformed_results(tmp_path, content, message):
    (tmp_path / results.ray_file(2)).write_text(json.dumps(make_run("ray_train", 1, 1, 1, 1, workers=2)))
    if content is not None:
        (tmp_path / results.BASELINE_FILE).write_text(content)
    finished = run([PYTHON, "-m", "analysis.compare", "--results-dir", str(tmp_path), "--num-workers", "2"])
    assert finished.returncode == 2
    assert message in finished.stderr
    assert not (tmp_path / results.COMPARISON_FILE).exists()
