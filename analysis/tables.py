"""The report's tables: the results table (pandas), GitHub markdown tables, per-class results.

report.py prints `format_table` and writes the others into REPORT.md.
"""

import numpy as np

from analysis import compare
from harness import steady_state

CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")


def results_table(pairs):
    """One row per configuration: time, throughput, speedups, efficiency and accuracy (pandas)."""
    import pandas as pd

    rows = []
    for pair in pairs:
        baseline, comparison = pair.baseline, pair.comparison
        runs = [(pair.baseline_label, baseline, None)]
        if pair.tensorflow_alone is not None:
            runs.append((pair.tensorflow_alone_label, pair.tensorflow_alone, compare.compare(baseline, pair.tensorflow_alone)))
        runs.append((pair.ray_label, pair.ray, comparison))
        for label, record, versus in runs:
            ratio = versus["throughput_ratio"] if versus else None
            rows.append({
                "Configuration": label,
                "Workers": record["num_workers"] if versus else 0,
                "Global batch": record["global_batch_size"],
                "Train time (s)": record["train_time_seconds"],
                "Total time (s)": record["total_time_seconds"],
                "Start-up (s)": record["startup_seconds"],
                "Trainer start to first batch (s)": record.get("trainer_start_to_first_batch_seconds"),
                "Images/s": compare.steady_images_per_second(record),
                "Speedup (images/s)": ratio,
                "Efficiency": ratio / record["num_workers"] if ratio is not None else None,
                "Speedup (train time)": versus["speedup"] if versus else None,
                "Speedup (end to end)": versus["speedup_end_to_end"] if versus else None,
                "Test accuracy": record["test_accuracy"],
                "Accuracy vs baseline (points)": versus["accuracy_delta"] * 100 if versus else None,
            })
    frame = pd.DataFrame(rows).set_index("Configuration")
    # A column with no value at all (no run settled) is empty, not a column of None.
    return frame.astype({column: float for column in frame.columns if frame[column].isna().all()})


TABLE_FORMATS = {
    "Workers": lambda value: "plain" if value == 0 else f"{value:d}",
    "Global batch": "{:d}".format,
    "Train time (s)": "{:.1f}".format,
    "Total time (s)": "{:.1f}".format,
    "Start-up (s)": "{:.1f}".format,
    "Trainer start to first batch (s)": "{:.1f}".format,
    "Images/s": "{:.1f}".format,
    "Speedup (images/s)": "{:.2f}x".format,
    "Efficiency": "{:.2f}".format,
    "Speedup (train time)": "{:.2f}x".format,
    "Speedup (end to end)": "{:.2f}x".format,
    "Test accuracy": "{:.4f}".format,
    "Accuracy vs baseline (points)": "{:+.2f}".format,
}


def format_table(pairs):
    """The main columns of the results table, as printed text."""
    columns = ["Global batch", "Images/s", "Speedup (images/s)", "Efficiency", "Speedup (end to end)",
               "Test accuracy"]
    frame = results_table(pairs)[columns]
    return frame.to_string(formatters={column: TABLE_FORMATS[column] for column in columns}, na_rep="–")


def report_runs(pairs):
    """(label, record) of every run of a run folder, each once: a baseline shared by the pairs
    first, then per pair its baseline, the TensorFlow-alone control when it ran, the Ray run."""
    runs = [(pairs[0].baseline_label, pairs[0].baseline)] if len({id(pair.baseline) for pair in pairs}) == 1 else []
    for pair in pairs:
        if not runs or runs[0][1] is not pair.baseline:
            runs.append((pair.baseline_label, pair.baseline))
        if pair.tensorflow_alone is not None:
            runs.append((pair.tensorflow_alone_label, pair.tensorflow_alone))
        runs.append((pair.ray_label, pair.ray))
    return runs


def epoch_section(pairs):
    """REPORT.md's per-epoch curve: each run's images/s per epoch, in bold the epochs its
    steady-state throughput counts, each run's verdict and the recipe's warnings."""
    runs = report_runs(pairs)
    steady = [steady_state.of_run(record) for _, record in runs]
    lines = ["## Per-epoch speed", "",
             "Images per second of each epoch's training steps, seconds in brackets. The steady state "
             f"(`harness/steady_state.py`, the {steady_state.SETTLED_WITHIN:.0%} rule): {steady_state.RULE}. "
             "**Bold**: the epochs that each run's throughput counts.", "",
             "| Epoch | " + " | ".join(label for label, _ in runs) + " |", "|---:|" + "---:|" * len(runs)]
    for epoch in range(1, max(len(state.epoch_times) for state in steady) + 1):
        cells = []
        for state in steady:
            speeds = state.epoch_images_per_second()
            if epoch > len(speeds) or speeds[epoch - 1] is None:
                cells.append("–")
                continue
            cell = f"{speeds[epoch - 1]:.1f} ({state.epoch_times[epoch - 1]:.1f} s)"
            cells.append(f"**{cell}**" if epoch in state.counted_epochs else cell)
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {label}: {state.verdict()}" + (f", {state.images_per_second:.1f} images/s" if state.settled else "")
              for (label, _), state in zip(runs, steady)]
    for pair in pairs:
        # Each run's settling is said above; the other checks here.
        lines += [f"- **Too short for the {warning['affects']} ({pair.ray_label})**: {warning['text']}"
                  for warning in pair.comparison.get("recipe_warnings") or [] if warning["check"] != "settling"]
    return lines + [""]


def markdown_table(frame, formats=None):
    """A DataFrame as a GitHub markdown table (pandas' to_markdown needs tabulate; this does not)."""
    formats = formats or {}

    def cell(column, value):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "–"
        formatter = formats.get(column)
        return str(value) if formatter is None else formatter(value)

    from pandas.api.types import is_numeric_dtype

    header = [str(frame.index.name or "")] + [str(column) for column in frame.columns]
    # Numbers right-aligned, text left-aligned.
    alignments = ["---:" if is_numeric_dtype(frame[column]) else ":---" for column in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "|".join(alignments) + "|"]
    # itertuples keeps each column's own type (iterrows would turn whole numbers into floats).
    for index, row in zip(frame.index, frame.itertuples(index=False)):
        cells = [str(index)] + [cell(column, value) for column, value in zip(frame.columns, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def class_names(dataset):
    if dataset == "cifar10":
        return list(CIFAR10_CLASS_NAMES)
    return [f"class {index}" for index in range(10)]


def per_class_section(label, record, labels):
    """sklearn's classification report and confusion matrix of one model, as markdown."""
    import pandas as pd
    from sklearn.metrics import classification_report, confusion_matrix

    names = class_names(record["dataset"])
    predictions = np.asarray(record["test_predictions"])
    report = classification_report(labels, predictions, labels=list(range(len(names))),
                                   target_names=names, digits=3, zero_division=0)
    matrix = confusion_matrix(labels, predictions, labels=list(range(len(names))))
    frame = pd.DataFrame(matrix, index=pd.Index(names, name="true \\ predicted"), columns=names)
    return "\n".join([f"### {label}", "", "```", report.rstrip(), "```", "",
                      "Confusion matrix (rows: true class, columns: predicted class):", "",
                      markdown_table(frame), ""])

