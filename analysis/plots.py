"""The report's plots, and the matplotlib set-up every plot of analysis/ shares.

report.py calls `write_plots`: speedup.png, epoch_times.png, break_even.png and
learning_curves_<N>workers.png in the run folder. monitoring_report.py draws its own plots
with `pyplot` and `save`.
"""

import os

import numpy as np

from analysis import compare
from analysis.tables import report_runs
from analysis.targets import efficiency_target
from harness import steady_state

SPEEDUP_PLOT = "speedup.png"
EPOCH_TIMES_PLOT = "epoch_times.png"
BREAK_EVEN_PLOT = "break_even.png"


def pyplot():
    """matplotlib.pyplot, drawing into files only."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def save(plt, figure, path):
    """Write a figure to path and close it."""
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def learning_curves_file(pair):
    return f"learning_curves_{pair.num_workers}workers.png"


def write_plots(pairs, run_dir):
    """Every plot of the report, into run_dir."""
    plot_speedup(pairs, os.path.join(run_dir, SPEEDUP_PLOT))
    plot_epoch_times(pairs, os.path.join(run_dir, EPOCH_TIMES_PLOT))
    plot_break_even(pairs, os.path.join(run_dir, BREAK_EVEN_PLOT))
    for pair in pairs:
        plot_learning_curves(pair, os.path.join(run_dir, learning_curves_file(pair)))


def plot_speedup(pairs, path):
    """Speedup against workers, with the ideal line, the target and each point's efficiency."""
    plt = pyplot()
    workers = [pair.num_workers for pair in pairs]
    most = max(workers + [2])
    figure, axes = plt.subplots(figsize=(7, 4.5))
    ideal = np.arange(1, most + 1)
    axes.plot(ideal, ideal, "--", color="grey", label="ideal (speedup = workers)")
    cores = (pairs[0].ray.get("host") or {}).get("logical_cores")
    targets = [1.0] + [efficiency_target(count, cores) for count in ideal[1:]]
    axes.plot(ideal, ideal * np.array(targets), ":", color="grey", label="target efficiency")
    series = (("throughput_ratio", "steady-state throughput", "o-"),
              ("speedup", "training time", "s-"),
              ("speedup_end_to_end", "end to end", "^-"))
    for key, label, style in series:
        points = [(pair.num_workers, pair.comparison[key]) for pair in pairs if pair.comparison[key] is not None]
        if points:
            axes.plot(*zip(*points), style, label=f"Ray Train, {label}")
        if key == "throughput_ratio":
            # The scaling efficiency (throughput speedup / workers) beside each point.
            for count, ratio in points:
                axes.annotate(f"efficiency {ratio / count:.2f}", (count, ratio), textcoords="offset points",
                              xytext=(6, 6), fontsize=8)
    axes.plot([1], [1], "k*", markersize=12, label="plain Keras baseline (1.0 by definition)")
    axes.set_xticks(ideal)
    axes.set_xlabel("Ray Train workers (1 CPU each)" if _one_cpu(pairs) else "Ray Train workers")
    axes.set_ylabel("speedup over the equal-batch baseline")
    axes.set_ylim(0, most + 0.5)
    axes.set_title("Speedup against workers")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    save(plt, figure, path)


def _one_cpu(pairs):
    return all(pair.ray["cpus_per_worker"] == 1 for pair in pairs)


def plot_epoch_times(pairs, path):
    """Time of each epoch's training steps, one bar per run: solid where the steady-state rule
    counts the epoch, hatched and pale where it does not."""
    plt = pyplot()
    configurations = [(label, record) for label, record in report_runs(pairs) if record["epoch_times_seconds"]]
    epochs = max(len(record["epoch_times_seconds"]) for _, record in configurations)
    width = 0.8 / len(configurations)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for index, (label, record) in enumerate(configurations):
        steady = steady_state.of_run(record)
        times = steady.epoch_times
        positions = np.arange(1, len(times) + 1) - 0.4 + width * (index + 0.5)
        rate = f"{steady.images_per_second:.1f} img/s steady" if steady.settled else "not settled"
        counted = [epoch - 1 for epoch in steady.counted_epochs]
        others = [epoch for epoch in range(len(times)) if epoch not in counted]
        # The label goes with the solid bars, so that the legend shows the run's colour plainly.
        for indices, style in ((counted, {}), (others, {"alpha": 0.35, "hatch": "//"})):
            if indices:
                axes.bar(positions[indices], [times[epoch] for epoch in indices], width=width, color=f"C{index}",
                         label=f"{label} ({rate})" if indices is counted or not counted else None, **style)
    axes.set_xticks(np.arange(1, epochs + 1))
    # Head room for the legend above the bars.
    axes.set_ylim(0, 1.35 * max(max(record["epoch_times_seconds"]) for _, record in configurations))
    axes.set_xlabel("epoch (the first includes graph tracing; solid: the epochs the steady state counts)")
    axes.set_ylabel("seconds (training steps only)")
    axes.set_title("Time per epoch")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, ncol=2, loc="upper center")
    save(plt, figure, path)


def plot_learning_curves(pair, path):
    """Training and validation accuracy and loss per epoch, baseline and Ray."""
    plt = pyplot()
    figure, (accuracy_axes, loss_axes) = plt.subplots(1, 2, figsize=(10, 4))
    all_epochs = set()
    # The baseline's markers are larger, so that identical curves (1 worker) both show.
    for (label, record), color, size in zip(((pair.baseline_label, pair.baseline), (pair.ray_label, pair.ray)),
                                            ("tab:blue", "tab:orange"), (9, 5)):
        history = record.get("history") or []
        epochs = [entry["epoch"] for entry in history]
        all_epochs.update(epochs)
        for axes, metric in ((accuracy_axes, "accuracy"), (loss_axes, "loss")):
            for prefix, style, kind in (("", "o-", "training"), ("val_", "s--", "validation")):
                values = [entry.get(prefix + metric) for entry in history]
                if values and None not in values:
                    axes.plot(epochs, values, style, color=color, markersize=size, label=f"{label}, {kind}")
    for axes, metric in ((accuracy_axes, "accuracy"), (loss_axes, "loss")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(f"{metric.capitalize()} per epoch")
        axes.set_xticks(sorted(all_epochs))
        axes.grid(alpha=0.3)
    accuracy_axes.legend(fontsize=7)
    figure.suptitle(f"{pair.baseline_label} vs {pair.ray_label}")
    save(plt, figure, path)


def plot_break_even(pairs, path):
    """End-to-end time against the baseline's training length, for the baseline and each Ray run
    (a note instead when no run's throughput settled)."""
    plt = pyplot()
    if all(None in pair.comparison["fixed_overhead_seconds"].values() for pair in pairs):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        axes.axis("off")
        axes.text(0.5, 0.5, "Not drawn: the runs' throughput had not settled\n(REPORT.md, Per-epoch speed)",
                  ha="center", va="center")
        save(plt, figure, path)
        return
    longest = max([pair.comparison.get("break_even_baseline_training_seconds") or 0 for pair in pairs]
                  + [compare.steady_training_seconds(pair.baseline) or 0 for pair in pairs])
    lengths = np.linspace(0, 2 * longest if longest else 600, 200)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    baseline_overhead = next(overhead["baseline"] for overhead in
                             (pair.comparison["fixed_overhead_seconds"] for pair in pairs) if None not in overhead.values())
    axes.plot(lengths, baseline_overhead + lengths, color="black", label="plain Keras, one process")
    for pair in pairs:
        comparison = pair.comparison
        if comparison["throughput_ratio"] is None or None in comparison["fixed_overhead_seconds"].values():
            continue
        overhead = comparison["fixed_overhead_seconds"]["ray"]
        line, = axes.plot(lengths, compare.end_to_end_seconds(overhead, comparison["throughput_ratio"], lengths),
                          label=pair.ray_label)
        measured = compare.steady_training_seconds(pair.baseline)
        axes.plot([measured], [pair.ray["total_time_seconds"]], "o", color=line.get_color())
        axes.plot([measured], [pair.baseline["total_time_seconds"]], "ko")
        crossing = comparison.get("break_even_baseline_training_seconds")
        if crossing:
            axes.axvline(crossing, color=line.get_color(), linestyle=":", alpha=0.7)
            axes.annotate(f"break-even {crossing:.0f} s", (crossing, baseline_overhead + crossing),
                          textcoords="offset points", xytext=(5, -15), fontsize=8, color=line.get_color())
    axes.set_xlabel("baseline training time at its steady rate (s): the length of the training")
    axes.set_ylabel("end-to-end time (s)")
    axes.set_title("End to end against training length (dots: this run)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    save(plt, figure, path)

