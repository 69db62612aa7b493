"""The table of a levers run (./scripts/experiments/levers-benchmark.sh): one row per configuration,
measured side by side in one run, with where each step's time went.

Run (from the repository root):
    .venv/bin/python -m analysis.levers --run-dir results/<date-time>-levers

Columns: steady-state images/s (harness/steady_state.py; a row that did not settle shows its
epochs after the first, marked "not settled"); the ratio to the plain Keras baseline and the efficiency
(ratio / workers); the ceiling row's ratio is what two independent processes reach
together on this machine, and "share of ceiling" is a Ray row's ratio over it; per step:
compute, all-reduce (wall and CPU), optimizer and input, in milliseconds (step_timing.py);
trainer start to first batch (TensorFlow alone: its launch to first batch); test accuracy.
The tensorflow-alone row is the Ray row's training without Ray (harness/tensorflow_alone.py). Rows that change the recipe (a larger batch)
also give the reference row's validation accuracy at the same wall-clock training time.
Writes LEVERS.md into the run folder.
"""

import argparse
import os
import sys

from harness import results, steady_state, tensorflow_alone

LEVERS_FILE = "LEVERS.md"


def load_rows(run_dir):
    """{row name: record} for every row folder of the run (the ceiling row: both processes)."""
    rows = {}
    for name in sorted(os.listdir(run_dir)):
        folder = os.path.join(run_dir, name)
        if not os.path.isdir(folder):
            continue
        if name == "ceiling":
            rows[name] = [results.load_run(os.path.join(folder, core, results.BASELINE_FILE))
                          for core in sorted(os.listdir(folder)) if core.startswith("core-")]
            continue
        for file in (results.BASELINE_FILE, results.ray_file(2), tensorflow_alone.results_file(2)):
            if os.path.exists(os.path.join(folder, file)):
                rows[name] = results.load_run(os.path.join(folder, file))
    if "baseline" not in rows:
        raise ValueError(f"{run_dir} has no baseline row ({results.BASELINE_FILE} in baseline/): every ratio "
                         "is against it. Run ./scripts/experiments/levers-benchmark.sh with 'baseline' in ROWS.")
    return rows


def accuracy_at(record, seconds):
    """The validation accuracy of the last epoch `record` finished within `seconds` of training."""
    elapsed, accuracy = 0.0, None
    for entry in record.get("history") or []:
        elapsed += entry["seconds"]
        if elapsed > seconds + 1e-9:
            break
        accuracy = entry.get("val_accuracy")
    return accuracy


def speed(record):
    """(images/s, settled): over the steady state, or, for a run that did not settle, over the
    epochs after the first, so that the rows measured side by side can still be set side by side."""
    steady = steady_state.of_run(record)
    if steady.settled:
        return steady.images_per_second, True
    epochs = list(range(2, len(steady.epoch_times) + 1)) or [1]
    return steady_state.images_per_second(steady.samples_per_epoch, steady.epoch_times, epochs), False


def table_rows(rows):
    """The table's rows as dicts, in the order the run made them."""
    baseline = rows["baseline"]
    baseline_speed, _ = speed(baseline)
    reference = rows.get("ray")
    ceiling_ratio = None
    found = []
    first = ["baseline", "ceiling", "tensorflow-alone", "ray"]
    order = first + sorted(set(rows) - set(first))
    for name in [name for name in order if name in rows]:
        record = rows[name]
        if name == "ceiling":
            speeds = [speed(run) for run in record]
            ips = sum(value for value, _ in speeds)
            ceiling_ratio = ips / baseline_speed
            found.append({"row": "ceiling: 2 plain Keras processes at once", "images_per_second": ips,
                          "settled": all(settled for _, settled in speeds),
                          "ratio": ceiling_ratio, "efficiency": ceiling_ratio / 2,
                          "breakdown": record[0].get("step_breakdown"),
                          "test_accuracy": None, "first_batch": None, "workers": 2})
            continue
        workers = record["num_workers"]
        images_per_second, settled = speed(record)
        ratio = images_per_second / baseline_speed
        row = {"row": _label(name, record), "images_per_second": images_per_second, "settled": settled, "ratio": ratio,
               "efficiency": ratio / workers, "breakdown": record.get("step_breakdown"),
               "test_accuracy": record["test_accuracy"], "workers": workers,
               "first_batch": record.get("trainer_start_to_first_batch_seconds",
                                         record.get("launch_to_first_batch_seconds"))}
        if ceiling_ratio and workers == 2:
            row["share_of_ceiling"] = ratio / ceiling_ratio
        if reference is not None and name.startswith("batch-"):
            row["reference_accuracy_same_time"] = accuracy_at(reference, record["train_time_seconds"])
            row["val_accuracy"] = (record.get("history") or [{}])[-1].get("val_accuracy")
        found.append(row)
    return found


def _label(name, record):
    if record["training_type"] == "baseline":
        return f"plain Keras, batch {record['global_batch_size']}, {record['cpus_per_worker']} CPU"
    if record["training_type"] == "tensorflow_alone":
        return f"TensorFlow alone, {record['num_workers']} processes, no Ray"
    details = {"ray": "default", "stock-step": "Keras' stock step (no timing)",
               "bfloat16": "all-reduce in bfloat16", "float16": "all-reduce in float16"}
    detail = details.get(name) or f"batch {record['batch_size_per_worker']} per worker, linear LR scaling"
    return f"Ray {record['num_workers']} workers: {detail}"


def markdown(rows):
    header = ("| Row | Images/s | vs baseline | Efficiency | Share of ceiling | Compute ms/step | "
              "All-reduce ms/step (CPU) | Optimizer ms | Input ms | Unaccounted | First batch (s) | Test accuracy |")
    lines = [header, "|:---|" + "---:|" * 11]
    for row in rows:
        parts = (row["breakdown"] or {}).get("seconds_per_step") or {}

        def ms(part):
            return f"{parts[part] * 1000:.0f}" if part in parts else "–"

        unaccounted = (row["breakdown"] or {}).get("unaccounted_share")
        accuracy = "–" if row["test_accuracy"] is None else f"{row['test_accuracy']:.4f}"
        if "reference_accuracy_same_time" in row:
            reference = row["reference_accuracy_same_time"]
            accuracy += (f" (val {row['val_accuracy']:.4f}; the default row at the same training time: "
                         f"{'no epoch yet' if reference is None else f'{reference:.4f}'})")
        lines.append(" | ".join([
            f"| {row['row']}", f"{row['images_per_second']:.1f}" + ("" if row["settled"] else " (not settled)"),
            f"{row['ratio']:.2f}x",
            f"{row['efficiency']:.2f}", f"{row['share_of_ceiling']:.2f}" if "share_of_ceiling" in row else "–",
            ms("compute"), f"{ms('allreduce')} ({ms('allreduce_cpu')})", ms("optimizer"), ms("input"),
            "–" if unaccounted is None else f"{unaccounted:.1%}",
            "–" if row["first_batch"] is None else f"{row['first_batch']:.1f}", accuracy]) + " |")
    if not all(row["settled"] for row in rows):
        lines += ["", f"Not settled: the row had no steady state by the {steady_state.SETTLED_WITHIN:.0%} rule of "
                      "`harness/steady_state.py` (fewer than 3 epochs, or the last ran more than "
                      f"{steady_state.SETTLED_WITHIN:.0%} faster than the one before); its images/s are over the epochs "
                      "after the first, and its ratios could change with more epochs."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, help="a levers run folder: results/<date-time>-levers")
    args = parser.parse_args(argv)
    try:
        rows = table_rows(load_rows(args.run_dir))
    except (ValueError, OSError) as error:
        print(f"levers: error: {error}", file=sys.stderr)
        return 2
    text = "\n".join([f"# Levers: {os.path.basename(os.path.normpath(args.run_dir))}", "",
                      "Measured side by side in this run (./scripts/experiments/levers-benchmark.sh); see "
                      "docs/PERFORMANCE.md for what each row means.", "", markdown(rows), ""])
    path = os.path.join(args.run_dir, LEVERS_FILE)
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
    print(text)
    print(f"Written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
