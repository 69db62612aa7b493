"""TUNE.md for a Tune search's run folder (lesson/ray_tune.py's tune_results.json): a row per way
(wall time, trials per hour, CPU utilisation, the best configuration and its test accuracy,
the time to a configuration within 1 point of the best), the plots, and which way got there
first. Printed too.

    .venv/bin/python -m analysis.tune_report --run-dir results/latest
"""

import argparse
import json
import os
import sys

from analysis.plots import pyplot, save

REPORT_FILE = "TUNE.md"
CURVES_PLOT = "tune_curves.png"
TIMES_PLOT = "tune_wall_times.png"
# A configuration "within 1 point" of the best: 0.01 of test accuracy below it, or better.
WITHIN = 0.01
COLOURS = {"data-parallel": "tab:blue", "trainer-per-trial": "tab:orange", "plain": "tab:green",
           "plain-asha": "tab:red"}


def final_accuracy(trial):
    return trial["epochs"][-1]["val_accuracy"] if trial["epochs"] else None


def summarise(data):
    """One dict per way, with the best accuracy over all ways and each way's time to within 1 point of it."""
    epochs = data["recipe"]["epochs"]
    rows = []
    for way in data["ways"]:
        trials = list(way["trials"].values())
        ended = [trial for trial in trials if trial["status"] in ("completed", "stopped early")]
        completed = [trial for trial in trials if trial["status"] == "completed" and len(trial["epochs"]) >= epochs]
        best = max(completed, key=final_accuracy, default=None)
        wall = way.get("wall_seconds") or 0
        rows.append({"way": way["way"], "status": way["status"], "wall_seconds": wall, "trials": len(trials),
                     "completed": len(completed), "stopped_early": sum(t["status"] == "stopped early" for t in trials),
                     "errors": [t["error"] for t in trials if t["status"] == "error"],
                     "trials_per_hour": len(ended) / wall * 3600 if wall else None,
                     "cpu_utilisation": way.get("cpu_utilisation"),
                     "epochs_trained": sum(len(t["epochs"]) for t in trials),
                     "best_config": best["config"] if best else None,
                     "best_accuracy": final_accuracy(best) if best else None, "completed_trials": completed})
    accuracies = [row["best_accuracy"] for row in rows if row["best_accuracy"] is not None]
    overall = max(accuracies, default=None)
    for row in rows:
        good = [trial["ended_seconds"] for trial in row.pop("completed_trials")
                if overall is not None and final_accuracy(trial) >= overall - WITHIN]
        row["seconds_to_within_1_point"] = min(good, default=None)
    return rows, overall


def verdict(rows, overall):
    """Which way reached a configuration within 1 point of the best first, and by how much."""
    timed = sorted((row["seconds_to_within_1_point"], row["way"]) for row in rows
                   if row["seconds_to_within_1_point"] is not None)
    if overall is None or not timed:
        return "No way completed a trial, so none found a configuration."
    first_seconds, first = timed[0]
    text = (f"**{first}** found a configuration within 1 point of the best test accuracy "
            f"({overall:.4f}) first, {first_seconds:.1f} s after its search began")
    if len(timed) > 1:
        others = ", ".join(f"{way} {seconds - first_seconds:.1f} s later ({seconds / first_seconds:.2f}x)"
                           for seconds, way in timed[1:])
        text += f"; {others}"
    missed = [row["way"] for row in rows if row["seconds_to_within_1_point"] is None]
    if missed:
        text += f". Never within 1 point: {', '.join(missed)}"
    return text + "."


def readings(rows):
    """What the wall times say, way against way, in words (only for the ways that ran)."""
    ways = {row["way"]: row for row in rows if row["status"] == "finished" and row["wall_seconds"]}
    lines = []

    def ratio(slow, fast):
        return ways[slow]["wall_seconds"] / ways[fast]["wall_seconds"]

    if {"data-parallel", "plain"} <= set(ways):
        lines.append(f"- The whole grid took data-parallel {ratio('data-parallel', 'plain'):.2f}x as long as plain: "
                     "N trials at once keep every core busy with no all-reduce, while one trial on N workers "
                     "waits for the all-reduce at every step and pays Ray Train's start-up once per trial.")
    if {"trainer-per-trial", "plain"} <= set(ways):
        lines.append(f"- trainer-per-trial took {ratio('trainer-per-trial', 'plain'):.2f}x as long as plain for the "
                     "same trials at the same concurrency: the difference is Ray Train's start-up, paid by "
                     "every trial. A trial that fits one core needs no Ray Train.")
    if {"plain-asha", "plain"} <= set(ways):
        asha, plain = ways["plain-asha"], ways["plain"]
        same = asha["best_config"] == plain["best_config"]
        lines.append(f"- ASHA stopped {asha['stopped_early']} of {asha['trials']} trials early and finished "
                     f"{ratio('plain', 'plain-asha'):.2f}x sooner than plain, and kept "
                     f"{'the same' if same else 'a different'} best configuration. It judges a trial by its early "
                     "epochs: a trial that starts slowly but ends well can be stopped.")
    return lines


def cell(value, template):
    return "-" if value is None else template.format(value)


def table(rows):
    lines = ["| way | wall time | trials (completed / stopped early / failed) | trials per hour | CPU utilisation "
             "| best configuration | its test accuracy | time to within 1 point of the best |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        config = row["best_config"]
        best = f"lr {config['learning_rate']:g}, global batch {config['global_batch_size']}" if config else "-"
        lines.append(
            f"| {row['way']}{'' if row['status'] == 'finished' else ' (' + row['status'] + ')'} "
            f"| {row['wall_seconds']:.1f} s | {row['trials']} ({row['completed']} / {row['stopped_early']} / "
            f"{len(row['errors'])}) | {cell(row['trials_per_hour'], '{:.0f}')} "
            f"| {cell(row['cpu_utilisation'], '{:.0%}')} | {best} | {cell(row['best_accuracy'], '{:.4f}')} "
            f"| {cell(row['seconds_to_within_1_point'], '{:.1f} s')} |")
    return "\n".join(lines)


def plot_curves(data, path):
    """Each trial's test accuracy after each epoch against the time since its way began."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for way in data["ways"]:
        colour = COLOURS.get(way["way"], "tab:gray")
        for index, trial in enumerate(way["trials"].values()):
            points = [(epoch["seconds"], epoch["val_accuracy"]) for epoch in trial["epochs"]]
            if not points:
                continue
            axes.plot(*zip(*points), marker="o", markersize=3, color=colour, alpha=0.8,
                      label=way["way"] if index == 0 else None)
            if trial["status"] == "stopped early":
                axes.plot(*points[-1], marker="x", markersize=10, color="black",
                          label="stopped by ASHA" if "stopped by ASHA" not in axes.get_legend_handles_labels()[1]
                          else None)
    axes.set_xlabel("seconds since the way's search began")
    axes.set_ylabel("test accuracy after the epoch")
    axes.set_title("Every trial of every way")
    axes.legend(fontsize=8)
    save(plt, figure, path)


def plot_wall_times(rows, path):
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.bar([row["way"] for row in rows], [row["wall_seconds"] for row in rows],
             color=[COLOURS.get(row["way"], "tab:gray") for row in rows])
    axes.set_ylabel("wall time of the whole search (s)")
    axes.set_title("The same grid, four ways")
    save(plt, figure, path)


def report(data, run_dir):
    """TUNE.md's text (the plots are written beside it)."""
    rows, overall = summarise(data)
    recipe, host = data["recipe"], data["host"]
    plot_curves(data, os.path.join(run_dir, CURVES_PLOT))
    plot_wall_times(rows, os.path.join(run_dir, TIMES_PLOT))
    cpus = recipe["num_workers"] * recipe["cpus_per_worker"]
    lines = [
        "# Ray Tune: one trial on N workers, or N trials at once", "",
        f"Status: **{data['status']}**. Machine: {host['cpu_model']} (family {host['cpu_family']}, model "
        f"{host['cpu_model_number']}), {host['logical_cores']} logical cores. Every way had {cpus} CPUs "
        f"({recipe['num_workers']} workers x {recipe['cpus_per_worker']}) and trained the same grid: learning rates "
        f"{', '.join(f'{rate:g}' for rate in data['learning_rates'])} x global batches "
        f"{', '.join(map(str, data['global_batches']))}, {recipe['epochs']} epochs of {recipe['train_size']} "
        f"{recipe['dataset']} images each, tested on {recipe['test_size']}.", "",
        table(rows), "", verdict(rows, overall), "", *readings(rows), "",
        f"![Every trial's test accuracy]({CURVES_PLOT})", "", f"![Wall time of each way]({TIMES_PLOT})", ""]
    errors = [(row["way"], error) for row in rows for error in row["errors"]]
    if errors:
        lines += ["Failed trials (the search went on without them):", ""]
        lines += [f"- {way}: {error}" for way, error in errors] + [""]
    best = next((row["best_config"] for row in rows if row["best_accuracy"] == overall), None)
    if best:
        per_worker = best["global_batch_size"] // recipe["num_workers"]
        lines += ["Retrain the best configuration with the benchmark, to see whether it beats the default recipe:", "",
                  f"    LEARNING_RATE={best['learning_rate']:g} BATCH_SIZE={per_worker} ./scripts/run-benchmark.sh", ""]
    lines += ["Trials per hour counts the trials that ended (completed or stopped early). CPU utilisation is the "
              "whole machine's busy share while the way ran. Times are from the start of each way's search.", ""]
    return "\n".join(lines), rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="a run folder of ./scripts/run-tune.sh, or results/latest")
    args = parser.parse_args(argv)
    try:
        run_dir = os.path.realpath(args.run_dir)
        path = os.path.join(run_dir, "tune_results.json")
        try:
            with open(path, encoding="utf-8") as results_file:
                data = json.load(results_file)
        except (OSError, ValueError) as error:
            raise ValueError(f"Cannot read {path} ({error}): run ./scripts/run-tune.sh, which writes it.") from None
        text, rows = report(data, run_dir)
    except ValueError as error:
        print(f"tune_report: error: {error}", file=sys.stderr)
        return 2
    with open(os.path.join(run_dir, REPORT_FILE), "w", encoding="utf-8") as out:
        out.write(text)
    print(table(rows))
    print(verdict(*summarise(data)))
    print(f"Report: {os.path.join(run_dir, REPORT_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
