"""The warnings of a recipe too short to compare (analysis/recipe_checks.py): the steps per
worker per epoch, the accuracy's plateau and the settling of the throughput, each beside
the targets it affects, on hand-made records and on the committed runs."""

import json
import os

import pytest

from analysis import compare, recipe_checks, targets
from analysis.run_folder import Pair
from harness import results

RESULTS = os.path.join(results.REPO_ROOT, "docs", "results")


def committed(*path):
    with open(os.path.join(RESULTS, *path), encoding="utf-8") as source:
        return json.load(source)


def record(accuracies, steps=32, epoch_times=(13.0, 12.0, 12.0), workers=2):
    return {"training_type": "ray_train" if workers > 1 else "baseline", "dataset": "synthetic",
            "train_size": steps * 128, "test_size": 1024, "epochs_completed": len(epoch_times),
            "batch_size_per_worker": 128 // workers, "global_batch_size": 128, "cpus_per_worker": 1,
            "num_workers": workers, "samples_per_epoch": steps * 128, "steps_per_epoch": steps,
            "startup_seconds": 5.0, "train_time_seconds": sum(epoch_times), "total_time_seconds": sum(epoch_times) + 30,
            "epoch_times_seconds": list(epoch_times), "images_per_second": None, "test_accuracy": accuracies[-1],
            "test_loss": 0.5, "seed": 42,
            "history": [{"epoch": number, "val_accuracy": value} for number, value in enumerate(accuracies, 1)]}


def checks(baseline, ray_run, alone=None):
    return {warning["check"]: warning for warning in recipe_checks.recipe_warnings(baseline, ray_run, alone)}


def test_the_part_4_short_recipe_warns_about_settling_steps_and_accuracy_beside_the_targets_it_affects():
    """EPOCHS=2 TRAIN_SIZE=2048: the committed batch-curve runs at 64 images per worker are that
    recipe (2 epochs, 16 steps an epoch), and their accuracies were 12.89 points apart."""
    baseline = committed("batch_curve", "plain-batch128", "baseline_results.json")
    ray_run = committed("batch_curve", "ray-batch64", "ray_results_2workers.json")
    alone = committed("batch_curve", "tensorflow_alone-batch64", "tensorflow_alone_results_2workers.json")
    found = checks(baseline, ray_run, alone)
    assert set(found) == {"settling", "steps", "plateau"}
    assert found["settling"]["runs"] == ["baseline", "tensorflow_alone", "ray"]
    assert found["steps"]["short"] == "16 steps per worker per epoch (20 at least)"
    assert found["plateau"]["short"] == "accuracy still climbing (the last epoch: +39.5, +14.1 points; 5 at most)"
    verdicts = {target["target"]: target for target in targets.evaluate_targets([Pair("folder", baseline, ray_run, alone)])}
    accuracy = verdicts["Ray 2 workers: test accuracy at most 1 point below the baseline's"]
    assert accuracy["result"] == "n/a" and accuracy["measured"].startswith("-12.89 points (0.3828 vs 0.5117")
    assert accuracy["warnings"] == [found["plateau"]["short"]]
    for name in ("Ray 2 workers: steady-state throughput >= 1.70x the baseline (efficiency >= 0.85)",
                 "Ray 2 workers: throughput >= 0.95 of TensorFlow alone's"):
        assert verdicts[name]["result"] == "n/a" and verdicts[name]["warnings"] == [
            found["settling"]["short"], found["steps"]["short"]], name
    assert verdicts["Ray 2 workers: trainer start to first batch <= 10 s"]["warnings"] == []
    printed = targets.format_targets(list(verdicts.values()))
    assert "        TOO SHORT: accuracy still climbing (the last epoch: +39.5, +14.1 points; 5 at most)" in printed
    table = compare.format_table(compare.compare(baseline, ray_run, alone))
    assert ("TOO SHORT for the accuracy: the accuracy was still climbing: the last epoch added +39.5 points to the "
            "baseline's and +14.1 points to Ray Train's validation accuracy") in table


def test_the_quick_start_run_is_long_enough_for_every_comparison():
    for folder in ("quickstart", "quickstart-zen3", os.path.join("scaling", "workers-2")):
        baseline, ray_run = committed(folder, "baseline_results.json"), committed(folder, "ray_results_2workers.json")
        assert recipe_checks.recipe_warnings(baseline, ray_run) == [], folder


def test_accuracies_that_agree_while_still_climbing_are_not_judged():
    """The 3-epoch runs of 2,048 images of docs/results/monitoring/ agreed within half a point,
    but their last epoch still added 23.7 and 34.3 points: the agreement was luck."""
    found = checks(committed("monitoring", "baseline_results.json"), committed("monitoring", "ray_results_2workers.json"))
    assert found["plateau"]["short"] == "accuracy still climbing (the last epoch: +23.7, +34.3 points; 5 at most)"
    assert found["steps"]["short"] == "16 steps per worker per epoch (20 at least)"


@pytest.mark.parametrize("last_gain, warned", [(0.050, False), (0.051, True)])
def test_the_accuracy_has_levelled_off_when_the_last_epoch_adds_5_points_or_fewer(last_gain, warned):
    baseline = record([0.70, 0.80, 0.80 + last_gain], workers=1)
    ray_run = record([0.70, 0.80, 0.82])
    assert ("plateau" in checks(baseline, ray_run)) is warned


def test_one_epoch_shows_no_accuracy_curve_and_is_named():
    found = checks(record([0.5], epoch_times=(10.0,), workers=1), record([0.5], epoch_times=(10.0,)))
    assert found["plateau"]["runs"] == ["baseline", "ray"]
    assert found["plateau"]["text"].startswith("The baseline and Ray Train trained 1 epoch: nothing shows")


@pytest.mark.parametrize("steps, warned", [(19, True), (20, False)])
def test_fewer_than_20_steps_per_worker_per_epoch_is_too_few_for_the_5_percent_rule(steps, warned):
    """One step twice as slow as the others moves an epoch's time by 1/steps: over 5% below 20."""
    found = checks(record([0.7, 0.8, 0.81], steps=steps, workers=1), record([0.7, 0.8, 0.81], steps=steps))
    assert ("steps" in found) is warned
    assert recipe_checks.MIN_STEPS_PER_EPOCH == 20


def test_records_without_validation_accuracy_get_no_accuracy_warning():
    baseline, ray_run = record([0.5, 0.9, 0.95], workers=1), record([0.5, 0.9, 0.95])
    for run in (baseline, ray_run):
        run["history"] = [{"epoch": entry["epoch"]} for entry in run["history"]]
    assert "plateau" not in checks(baseline, ray_run)
