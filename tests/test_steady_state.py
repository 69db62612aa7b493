"""The steady-state rule (harness/steady_state.py) on hand-made epoch times, and what every
consumer makes of it: the comparison, its table, the targets and the levers table."""

import json
import os

import pytest

from analysis import compare, levers
from harness import results, steady_state

SAMPLES = 1000


def steady(*epoch_times):
    return steady_state.SteadyState(SAMPLES, epoch_times)


def test_a_run_settles_at_the_first_epoch_after_the_first_that_no_later_epoch_beats_by_more_than_5_percent():
    # A Ray run that warms up for two epochs, then holds its speed within a few percent.
    state = steady(16.0, 12.5, 10.4, 10.2, 10.3)
    assert state.settled_from == 3 and state.counted_epochs == [3, 4, 5]
    assert state.images_per_second == pytest.approx(3 * SAMPLES / (10.4 + 10.2 + 10.3))
    assert state.verdict() == "settled from epoch 3 (epochs 3-5 counted)"


def test_a_flat_run_settles_at_its_second_epoch_and_the_first_never_counts():
    # The quick-start baseline's epochs: the third 4.8% faster than the second, within the rule.
    state = steady(54.8, 54.1, 51.6)
    assert state.counted_epochs == [2, 3]
    # Even a first epoch as fast as the others holds graph tracing: it is never counted.
    assert steady(10.0, 10.0, 10.0).counted_epochs == [2, 3]


def test_a_run_that_keeps_getting_faster_never_settles_and_says_by_how_much():
    # issue 22's Ray run: each epoch more than 5% faster than the one before.
    state = steady(16.3, 12.3, 10.6, 9.4)
    assert not state.settled and state.counted_epochs == [] and state.images_per_second is None
    assert state.verdict() == ("not settled: still getting faster, epoch 4 ran 12.8% faster than epoch 3 "
                               "(the rule allows 5%)")


@pytest.mark.parametrize("epoch_times, words", [
    ((19.5, 17.5), "too short to settle with 2 epochs (the first traces the graph, and the second has no later one"),
    ((30.0,), "too short to settle with 1 epoch (it traces the graph; 3 epochs at least)"),
])
def test_a_run_of_fewer_than_3_epochs_is_too_short_to_settle(epoch_times, words):
    state = steady(*epoch_times)
    assert state.settled_from is None and state.images_per_second is None
    assert state.verdict().startswith(words)


def test_one_slow_epoch_in_the_middle_neither_fakes_nor_prevents_settling():
    # Settled from epoch 2: the slow fourth epoch is no later epoch beating it, and it counts,
    # since it is part of what the run cost.
    state = steady(20.0, 12.0, 12.2, 15.0, 12.1, 12.0)
    assert state.counted_epochs == [2, 3, 4, 5, 6]
    assert state.images_per_second == pytest.approx(5 * SAMPLES / (12.0 + 12.2 + 15.0 + 12.1 + 12.0))
    # A slow epoch before the plateau is not taken for the plateau: epoch 3 is slower than
    # epoch 2, but epoch 4 beats both by far.
    assert steady(20.0, 14.0, 15.0, 11.0, 11.0).counted_epochs == [4, 5]


def test_exactly_5_percent_faster_still_counts_as_settled():
    assert steady(20.0, 10.5, 10.0).counted_epochs == [2, 3]
    assert steady(20.0, 10.6, 10.0).counted_epochs == []


def run_record(kind, epoch_times, accuracies, workers=2, steps=32):
    """A results record with these epoch times and validation accuracies."""
    return {"training_type": kind, "dataset": "synthetic", "train_size": steps * 128, "test_size": 1024,
            "epochs_completed": len(epoch_times), "batch_size_per_worker": 128 // workers, "global_batch_size": 128,
            "cpus_per_worker": 1, "num_workers": workers, "samples_per_epoch": steps * 128,
            "steps_per_epoch": steps, "startup_seconds": 5.0, "train_time_seconds": sum(epoch_times),
            "total_time_seconds": sum(epoch_times) + 20.0, "epoch_times_seconds": list(epoch_times),
            "images_per_second": None, "test_accuracy": accuracies[-1], "test_loss": 0.5,
            "history": [{"epoch": number, "val_accuracy": value} for number, value in enumerate(accuracies, 1)]}


def test_the_comparison_gives_no_steady_state_speedup_while_ray_still_gets_faster():
    baseline = run_record("baseline", [13.0, 12.6, 12.8, 12.7], [0.80, 0.85, 0.86, 0.86], workers=1)
    ray_run = run_record("ray_train", [16.3, 12.3, 10.6, 9.4], [0.80, 0.85, 0.86, 0.86])
    comparison = compare.compare(baseline, ray_run)
    assert comparison["throughput_ratio"] is None and comparison["scaling_efficiency"] is None
    assert comparison["break_even_baseline_training_seconds"] is None
    assert comparison["baseline"]["steady_state"]["counted_epochs"] == [2, 3, 4]
    assert comparison["ray"]["images_per_second"] is None
    # The whole-training figures stay.
    assert comparison["speedup"] == pytest.approx(sum(baseline["epoch_times_seconds"]) / sum(ray_run["epoch_times_seconds"]))
    assert [warning["check"] for warning in comparison["recipe_warnings"]] == ["settling"]
    assert comparison["recipe_warnings"][0]["runs"] == ["ray"]
    table = compare.format_table(comparison)
    assert "Speedup (throughput):      not measured: Ray Train had not settled" in table
    assert "Break-even:                not computed: Ray Train had not settled" in table
    assert "Throughput (images/s)" in table and "not settled" in table.split("Throughput (images/s)")[1].split("\n")[0]
    assert "TOO SHORT for the throughput: Ray Train: not settled: still getting faster, epoch 4 ran 12.8% faster" in table
    assert "Speedup (training time):   1.05x faster" in table


def test_the_throughput_is_read_from_the_epoch_times_not_from_the_recorded_figure():
    """Runs recorded before the rule hold the old figure (every epoch after the first): the
    analysis applies the rule to their epoch times, the same for every consumer."""
    baseline = run_record("baseline", [13.0, 12.0, 12.0], [0.8, 0.85, 0.86], workers=1)
    ray_run = run_record("ray_train", [10.0, 6.0, 6.0], [0.8, 0.85, 0.86])
    baseline["images_per_second"], ray_run["images_per_second"] = 1.0, 1.0
    comparison = compare.compare(baseline, ray_run)
    assert comparison["throughput_ratio"] == pytest.approx(2.0)
    assert comparison["ray"]["images_per_second"] == pytest.approx(32 * 128 / 6.0)
    assert levers.speed(ray_run) == (pytest.approx(32 * 128 / 6.0), True)


def test_the_levers_table_marks_a_row_that_did_not_settle_and_says_why():
    rows = {"baseline": run_record("baseline", [13.0, 12.0, 12.0], [0.8, 0.85, 0.86], workers=1),
            "tensorflow-alone": run_record("tensorflow_alone", [23.4, 19.4, 18.3], [0.8, 0.85, 0.86]),
            "ray": run_record("ray_train", [10.0, 6.0, 6.0], [0.8, 0.85, 0.86])}
    for record in rows.values():
        record.update(history=[dict(entry, seconds=1.0) for entry in record["history"]])
    table = levers.table_rows(rows)
    alone = next(row for row in table if row["row"].startswith("TensorFlow alone"))
    # Its epochs after the first, as the rows are set side by side, but marked.
    assert not alone["settled"] and alone["images_per_second"] == pytest.approx(2 * 32 * 128 / (19.4 + 18.3))
    text = levers.markdown(table)
    assert f"| {alone['images_per_second']:.1f} (not settled) |" in text
    assert "Not settled: the row had no steady state by the 5% rule" in text
    assert "(not settled)" not in levers.markdown([row for row in table if row["settled"]])


def test_a_new_record_holds_the_rules_throughput_and_its_verdict():
    plan = {"samples_per_epoch": 1000, "global_batch_size": 128, "steps_per_epoch": 7}
    settings = {"dataset": "synthetic", "train_size": 1000, "test_size": 100, "epochs": 2, "batch_size": 128,
                "cpus_per_worker": 1, "num_workers": 1, "learning_rate": 0.001, "lr_scaling": "none",
                "allreduce_dtype": "float32", "seed": 42}
    recorder = {"epoch_times_seconds": [3.0, 2.0], "first_batch_time": 1.0, "history": []}
    record = results.run_record("baseline", settings, plan, 0.0, recorder, 0.5, 0.8, [])
    assert record["images_per_second"] is None
    assert record["steady_state"]["verdict"].startswith("too short to settle with 2 epochs")
    record["total_time_seconds"] = 9.0
    assert "no steady images/s (too short to settle with 2 epochs" in results.summary_line(record)


def test_the_committed_quick_start_run_settled_from_its_second_epoch_so_its_figures_did_not_move():
    folder = os.path.join(results.REPO_ROOT, "docs", "results", "quickstart")
    for name in ("baseline_results.json", "ray_results_2workers.json", "tensorflow_alone_results_2workers.json"):
        with open(os.path.join(folder, name), encoding="utf-8") as source:
            record = json.load(source)
        assert steady_state.of_run(record).counted_epochs == [2, 3], name
        assert compare.steady_images_per_second(record) == pytest.approx(record["images_per_second"])
