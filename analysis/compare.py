"""Compare the baseline with a Ray run: speedup, scaling efficiency, break-even, accuracy.

Reads baseline_results.json and ray_results_<N>workers.json from a run folder, writes
comparison.json beside them and prints a table.

Run (from the repository root):
    .venv/bin/python -m analysis.compare --results-dir results/latest --num-workers 2

Definitions (all from numbers measured in the two runs):
- throughput_ratio = Ray images/s / baseline images/s, each over its steady state by the 5%
  rule of harness/steady_state.py (epoch 1 never counts; from the first later epoch that no
  later epoch beats by more than 5%): what N workers do per second once they run; None, and
  said in words, when either run did not settle (too few epochs, or still getting faster);
- scaling_efficiency = throughput_ratio / N (1.00 would be perfect scaling); this is the
  only "efficiency" in this project;
- speedup = baseline training time / Ray training time (training steps, the same work);
- speedup_end_to_end = the same with the total times (start-up, validation, evaluation);
- fixed_overhead_seconds = each run's total time minus its training at the steady rate:
  start-up, the slower epochs before the steady state, validation, evaluation, teardown;
- break_even_baseline_training_seconds = how long the baseline must train (at its steady
  rate) before Ray is faster end to end: the extra fixed overhead of the Ray run divided by
  the share of training time Ray saves, (F_ray - F_baseline) / (1 - 1 / throughput_ratio);
  0 when Ray's overhead is no larger, None when Ray is no faster once it runs. It assumes
  that a longer run means more training (more data per epoch) at the measured rates, with
  the same start-up, validation and evaluation; None too when a run did not settle;
- accuracy_delta = Ray test accuracy - baseline test accuracy;
- with a TensorFlow-alone run beside them (harness/tensorflow_alone.py: the same training as
  N plain processes with TF_CONFIG written by hand, no Ray): tensorflow_alone_throughput_ratio
  = its images/s / the baseline's, and ray_vs_tensorflow_alone = Ray's images/s / its images/s,
  which split the gap from N times the baseline into TensorFlow's part (the smaller per-worker
  batch and the strategy's collectives) and Ray's own;
- recipe_warnings = where the recipe is too short for the throughput or the accuracy to be
  compared (analysis/recipe_checks.py), each with the runs and the targets it affects.
"""

import argparse
import os
import sys

from analysis import recipe_checks
from harness import results, steady_state, tensorflow_alone as tf_alone


def compare(baseline, ray_run, tensorflow_alone=None):
    """The comparison of two run records (and of the TensorFlow-alone run, when there is
    one), as a dict (the content of comparison.json)."""
    num_workers = ray_run["num_workers"]
    warnings = []
    baseline_work = baseline.get("samples_per_epoch", 0) * baseline["epochs_completed"]
    ray_work = ray_run.get("samples_per_epoch", 0) * ray_run["epochs_completed"]
    if baseline_work != ray_work:
        warnings.append(f"The runs did different amounts of work (baseline {baseline_work} samples, "
                        f"Ray {ray_work}): the time ratio is not a fair speedup; compare throughput.")
    if baseline["dataset"] != ray_run["dataset"]:
        warnings.append(f"Different datasets: baseline {baseline['dataset']}, Ray {ray_run['dataset']}.")
    if baseline["global_batch_size"] != ray_run["global_batch_size"]:
        warnings.append(f"Different global batches (baseline {baseline['global_batch_size']}, Ray "
                        f"{ray_run['global_batch_size']}): the accuracies are not from the same recipe.")
    if baseline["cpus_per_worker"] != ray_run["cpus_per_worker"]:
        warnings.append(f"Different CPU budgets per process (baseline {baseline['cpus_per_worker']}, "
                        f"Ray {ray_run['cpus_per_worker']} per worker).")
    throughput_ratio = _ratio(steady_images_per_second(ray_run), steady_images_per_second(baseline))
    overhead = {"baseline": fixed_overhead(baseline), "ray": fixed_overhead(ray_run)}
    comparison = {
        "num_workers": num_workers,
        "throughput_ratio": throughput_ratio,
        "scaling_efficiency": throughput_ratio / num_workers if throughput_ratio is not None else None,
        "speedup": _ratio(baseline["train_time_seconds"], ray_run["train_time_seconds"]),
        "speedup_end_to_end": _ratio(baseline["total_time_seconds"], ray_run["total_time_seconds"]),
        "fixed_overhead_seconds": overhead,
        "break_even_baseline_training_seconds": break_even(overhead["baseline"], overhead["ray"], throughput_ratio),
        "accuracy_delta": ray_run["test_accuracy"] - baseline["test_accuracy"],
        "warnings": warnings,
        "recipe_warnings": recipe_checks.recipe_warnings(baseline, ray_run, tensorflow_alone),
        "baseline": _summary(baseline),
        "ray": _summary(ray_run),
    }
    if tensorflow_alone is not None:
        if tensorflow_alone["samples_per_epoch"] != ray_run["samples_per_epoch"] or \
                tensorflow_alone["num_workers"] != num_workers:
            warnings.append("The TensorFlow-alone run trained another recipe than the Ray run: compare "
                            "its column with care.")
        comparison.update(
            tensorflow_alone=_summary(tensorflow_alone),
            tensorflow_alone_throughput_ratio=_ratio(steady_images_per_second(tensorflow_alone),
                                                     steady_images_per_second(baseline)),
            ray_vs_tensorflow_alone=_ratio(steady_images_per_second(ray_run),
                                           steady_images_per_second(tensorflow_alone)),
            tensorflow_alone_speedup_end_to_end=_ratio(baseline["total_time_seconds"],
                                                       tensorflow_alone["total_time_seconds"]))
    return comparison


def steady_images_per_second(run):
    """A run's images/s over its steady state (harness/steady_state.py), computed from its epoch
    times, so that a run recorded before the rule is read by it too; None when it did not settle."""
    return steady_state.of_run(run).images_per_second


def steady_training_seconds(run):
    """The run's training work at its steady-state rate (None when it did not settle)."""
    speed = steady_images_per_second(run)
    if not speed:
        return None
    return run.get("samples_per_epoch", 0) * run["epochs_completed"] / speed


def fixed_overhead(run):
    """Everything in the run's total time that is not training at the steady rate."""
    steady = steady_training_seconds(run)
    return None if steady is None else run["total_time_seconds"] - steady


def break_even(baseline_overhead, ray_overhead, throughput_ratio):
    """Baseline training seconds beyond which the Ray run is faster end to end (see above)."""
    if None in (baseline_overhead, ray_overhead, throughput_ratio) or throughput_ratio <= 1.0:
        return None
    return max(ray_overhead - baseline_overhead, 0.0) / (1.0 - 1.0 / throughput_ratio)


def end_to_end_seconds(overhead, throughput_ratio, baseline_training_seconds):
    """The modelled end-to-end time of a run for a baseline training length (the break-even plot)."""
    return overhead + baseline_training_seconds / throughput_ratio


def _ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _summary(run):
    keys = ("training_type", "dataset", "train_size", "test_size", "epochs_completed",
            "batch_size_per_worker", "global_batch_size", "cpus_per_worker", "num_workers",
            "startup_seconds", "train_time_seconds", "total_time_seconds", "epoch_times_seconds",
            "images_per_second", "test_accuracy", "test_loss")
    steady = steady_state.of_run(run)
    return {key: run.get(key) for key in keys} | {"images_per_second": steady.images_per_second,
                                                  "steady_state": steady.as_dict()}


def faster_or_slower(ratio):
    """'<ratio>x faster' or '<ratio>x, slower' (two decimals): never call a slower run faster."""
    if ratio is None:
        return "n/a"
    if ratio > 1.0:
        return f"{ratio:.2f}x faster"
    if ratio < 1.0:
        return f"{ratio:.2f}x, slower"
    return "1.00x, the same"


def format_table(comparison):
    """The comparison as a plain-text table and a verdict."""
    baseline, ray_run = comparison["baseline"], comparison["ray"]
    alone = comparison.get("tensorflow_alone")
    workers = comparison["num_workers"]
    columns = [("Baseline", 14, baseline)] + ([("TensorFlow alone", 20, alone)] if alone else []) + \
        [(f"Ray Train ({plural(workers, 'worker')})", 24, ray_run)]
    width = 30 + sum(1 + size for _, size, _ in columns)
    lines = [f"{'':30}" + "".join(f" {title:>{size}}" for title, size, _ in columns), "-" * width]
    for label, key, pattern in TABLE_ROWS:
        lines.append(f"{label:30}" + "".join(f" {_cell(run, key, pattern):>{size}}" for _, size, run in columns))
    lines.append("-" * width)
    lines.append(f"Speedup (throughput):      {throughput_sentence(comparison)}")
    lines.append(f"Speedup (training time):   {faster_or_slower(comparison['speedup'])}")
    lines.append(f"Speedup (end to end):      {faster_or_slower(comparison['speedup_end_to_end'])}")
    lines.append(f"Break-even:                {break_even_sentence(comparison)}")
    lines.append(f"Accuracy difference:       {comparison['accuracy_delta'] * 100:+.2f} points (Ray - baseline)")
    if alone:
        lines.append(f"Ray vs TensorFlow alone:   {gap_sentence(comparison)}")
    for warning in comparison["warnings"]:
        lines.append(f"WARNING: {warning}")
    for warning in comparison.get("recipe_warnings") or []:
        lines.append(f"TOO SHORT for the {warning['affects']}: {warning['text']}")
    return "\n".join(lines)


# The printed table's rows: label, the key of each run's summary, format.
TABLE_ROWS = (("Training time (s)", "train_time_seconds", "{:.1f}"),
              ("Start-up to first batch (s)", "startup_seconds", "{:.1f}"),
              ("Total time (s)", "total_time_seconds", "{:.1f}"),
              ("Throughput (images/s)", "images_per_second", "{:.1f}"),
              ("Test accuracy", "test_accuracy", "{:.4f}"),
              ("Global batch", "global_batch_size", "{}"),
              ("CPUs per process", "cpus_per_worker", "{}"))


def throughput_sentence(comparison):
    """The steady-state speedup and efficiency, or why there is none."""
    ratio, workers = comparison["throughput_ratio"], comparison["num_workers"]
    if ratio is None:
        return _not_settled(comparison, ("baseline", "ray"), "not measured")
    return (f"{faster_or_slower(ratio)}, scaling efficiency {comparison['scaling_efficiency']:.2f} "
            f"(/ {plural(workers, 'worker')}; 1.00 is perfect)")


def _not_settled(comparison, keys, what):
    """'not measured: the baseline had not settled (...)', or 'n/a' when nothing was recorded."""
    names = recipe_checks.unsettled_names(comparison, keys)
    if not names:
        return "n/a"
    return f"{what}: {names} had not settled (the TOO SHORT warnings say why)"


def gap_sentence(comparison):
    """Where the gap from N times the baseline goes: TensorFlow's part, then Ray's own."""
    workers, alone_ratio = comparison["num_workers"], comparison["tensorflow_alone_throughput_ratio"]
    ray_share = comparison["ray_vs_tensorflow_alone"]
    if None in (alone_ratio, ray_share):
        return _not_settled(comparison, ("baseline", "tensorflow_alone", "ray"), "not compared")
    return (f"Ray reaches {ray_share:.2f} of TensorFlow alone's images/s (1.00: Ray costs nothing on top), and "
            f"TensorFlow alone {alone_ratio:.2f}x the baseline, {alone_ratio / workers:.2f} of {workers}x (the per-worker "
            "batch and the strategy's collectives)")


def plural(count, word):
    """'1 epoch', '2 epochs'."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def break_even_sentence(comparison):
    """When the Ray run pays off end to end, on the machine of these two runs."""
    seconds = comparison.get("break_even_baseline_training_seconds")
    workers = comparison["num_workers"]
    if comparison["throughput_ratio"] is None:
        return _not_settled(comparison, ("baseline", "ray"), "not computed")
    if seconds is None:
        return f"never: {plural(workers, 'Ray worker')} train{'s' if workers == 1 else ''} no faster than one process here"
    if seconds == 0:
        return f"always: {plural(workers, 'Ray worker')} cost{'s' if workers == 1 else ''} no more to start than one process here"
    return (f"{plural(workers, 'Ray worker')} beat{'s' if workers == 1 else ''} one process end to end once the baseline trains "
            f"for more than {seconds:.0f} s on this machine")


def _cell(run, key, pattern):
    """One cell of the printed table: a throughput that did not settle says so."""
    value = run[key]
    if value is None and key == "images_per_second" and run.get("steady_state"):
        return "not settled"
    return "n/a" if value is None else pattern.format(value)


def load_tensorflow_alone(folder, num_workers):
    """The folder's TensorFlow-alone run with that many workers, or None when it has none."""
    path = os.path.join(folder, tf_alone.results_file(num_workers))
    return results.load_run(path) if os.path.exists(path) else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", default="results", help="folder with the two results files "
                        "(a run folder such as results/latest)")
    parser.add_argument("--num-workers", type=int, required=True,
                        help="which Ray run to compare: reads ray_results_<N>workers.json")
    args = parser.parse_args(argv)
    try:
        baseline = results.load_run(os.path.join(args.results_dir, results.BASELINE_FILE))
        ray_run = results.load_run(os.path.join(args.results_dir, results.ray_file(args.num_workers)))
        comparison = compare(baseline, ray_run, load_tensorflow_alone(args.results_dir, args.num_workers))
    except ValueError as error:
        print(f"compare: error: {error}", file=sys.stderr)
        return 2
    results.write_json_atomic(os.path.join(args.results_dir, results.COMPARISON_FILE), comparison)
    print(format_table(comparison))
    return 0


if __name__ == "__main__":
    sys.exit(main())
