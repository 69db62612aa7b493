"""A run folder read for the report: its pairs of a Ray run and the baseline it is compared with.

A run folder holds either one comparison (baseline_results.json and one
ray_results_<N>workers.json, as written by ./scripts/run-benchmark.sh) or a sweep: one
sub-folder per Ray worker count, each holding such a pair (./scripts/experiments/scaling-benchmark.sh).
Each Ray run is compared with the baseline in its own folder, which used the same global
batch. report.py reads a run folder through `find_pairs`.
"""

import glob
import os

import numpy as np

from analysis import compare
from analysis.compare import plural
from harness import results
from lesson import data


class Pair:
    """One Ray run, the baseline it is compared with, and their comparison."""

    def __init__(self, folder, baseline, ray_run, tensorflow_alone=None):
        self.folder = folder
        self.baseline = baseline
        self.ray = ray_run
        self.tensorflow_alone = tensorflow_alone  # the control without Ray, when it ran
        self.comparison = compare.compare(baseline, ray_run, tensorflow_alone)
        self.num_workers = ray_run["num_workers"]

    @property
    def baseline_label(self):
        return f"Plain Keras, batch {self.baseline['global_batch_size']}"

    @property
    def ray_label(self):
        return f"Ray Train, {workers_text(self.num_workers)}"

    @property
    def tensorflow_alone_label(self):
        return f"TensorFlow alone, {workers_text(self.num_workers)}"


def workers_text(count):
    """'1 worker', '2 workers'."""
    return plural(count, "worker")


def _holds_pair(folder):
    return (os.path.isfile(os.path.join(folder, results.BASELINE_FILE))
            or bool(glob.glob(os.path.join(folder, "ray_results_*workers.json"))))


def load_pair(folder):
    """The baseline and the single Ray run of a folder."""
    ray_files = sorted(glob.glob(os.path.join(folder, "ray_results_*workers.json")))
    if len(ray_files) != 1:
        found = ", ".join(os.path.basename(path) for path in ray_files) or "none"
        raise ValueError(f"{folder} must hold exactly one ray_results_<N>workers.json beside "
                         f"{results.BASELINE_FILE}, found {found}. Give each Ray run its own folder "
                         "(the benchmark scripts do).")
    baseline = results.load_run(os.path.join(folder, results.BASELINE_FILE))
    ray_run = results.load_run(ray_files[0])
    return Pair(folder, baseline, ray_run, compare.load_tensorflow_alone(folder, ray_run["num_workers"]))


def find_pairs(run_dir):
    """The pairs of a run folder: the folder itself, or one per sub-folder (a sweep)."""
    if not os.path.isdir(run_dir):
        raise ValueError(f"{run_dir} is not a folder. Pass a run folder, e.g. --run-dir results/latest.")
    if _holds_pair(run_dir):
        folders = [run_dir]
    else:
        folders = sorted(path for path in glob.glob(os.path.join(run_dir, "*"))
                         if os.path.isdir(path) and _holds_pair(path))
    if not folders:
        raise ValueError(f"{run_dir} holds no results: neither {results.BASELINE_FILE} with a "
                         "ray_results_<N>workers.json, nor sub-folders holding them. Run "
                         "./scripts/run-benchmark.sh or ./scripts/experiments/scaling-benchmark.sh first.")
    pairs = sorted((load_pair(folder) for folder in folders), key=lambda pair: pair.num_workers)
    counts = [pair.num_workers for pair in pairs]
    if len(set(counts)) != len(counts):
        raise ValueError(f"{run_dir} holds more than one Ray run with the same worker count "
                         f"({counts}): one run folder is one benchmark.")
    return pairs


def true_test_labels(record, data_dir=None):
    """The test labels a run was evaluated on, rebuilt from its dataset, size and seed.

    The record stores only the predictions, so the labels are loaded again and checked:
    the accuracy they give must be the accuracy the run recorded.
    """
    predictions = np.asarray(record["test_predictions"])
    dataset = data.load_dataset(record["dataset"], 1, record["test_size"], data_dir=data_dir,
                                seed=record.get("seed", 42))
    labels = dataset.y_test
    if len(labels) != len(predictions) or not np.isclose((labels == predictions).mean(),
                                                         record["test_accuracy"], atol=1e-9):
        raise ValueError(f"The rebuilt {record['dataset']} test labels do not match the recorded "
                         "predictions and accuracy: the data or its order changed since the run.")
    return labels
