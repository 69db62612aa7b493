"""The report's tables: the results table (pandas), GitHub markdown tables, per-class results.

report.py prints `format_table` and writes the others into REPORT.md.
"""

import numpy as np

from analysis import compare

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
                "Images/s": record["images_per_second"],
                "Speedup (images/s)": ratio,
                "Efficiency": ratio / record["num_workers"] if ratio is not None else None,
                "Speedup (train time)": versus["speedup"] if versus else None,
                "Speedup (end to end)": versus["speedup_end_to_end"] if versus else None,
                "Test accuracy": record["test_accuracy"],
                "Accuracy vs baseline (points)": versus["accuracy_delta"] * 100 if versus else None,
            })
    return pd.DataFrame(rows).set_index("Configuration")


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

