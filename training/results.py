"""The results contract: file names and the keys every run's JSON holds.

Other scripts and checks read these keys; change them here and in README.md together.
"""

import json
import os
import time

from training import runtime

BASELINE_FILE = "baseline_results.json"
COMPARISON_FILE = "comparison.json"

# Keys every run's JSON must hold (compare.py refuses a file without them).
RUN_KEYS = (
    "training_type", "dataset", "train_size", "test_size", "epochs_completed",
    "batch_size_per_worker", "global_batch_size", "cpus_per_worker", "num_workers",
    "startup_seconds", "train_time_seconds", "total_time_seconds", "epoch_times_seconds",
    "images_per_second", "test_accuracy", "test_loss", "versions", "host",
)


def ray_file(num_workers):
    return f"ray_results_{num_workers}workers.json"


def run_record(*, training_type, sizes, per_worker_batch, num_workers, cpus_per_worker,
               plan, run_start, first_batch_time, epoch_times, history, test_loss,
               test_accuracy, test_predictions, learning_rate, seed):
    """The keys shared by the baseline and the Ray results, computed the same way for both.

    - startup_seconds: from the entry point's start to the first training batch
      (TensorFlow import, data, model; for Ray also connecting and starting workers).
    - train_time_seconds: the training steps, summed over epochs (validation excluded).
    - total_time_seconds: entry point start to results written, everything included.
    """
    return {
        "training_type": training_type,
        "dataset": sizes["dataset"],
        "train_size": sizes["train_size"],
        "test_size": sizes["test_size"],
        "epochs_completed": len(epoch_times),
        "epochs_requested": sizes["epochs"],
        "batch_size_per_worker": per_worker_batch,
        "global_batch_size": plan["global_batch_size"],
        "steps_per_epoch": plan["steps_per_epoch"],
        "samples_per_epoch": plan["samples_per_epoch"],
        "cpus_per_worker": cpus_per_worker,
        "num_workers": num_workers,
        "learning_rate": learning_rate,
        "seed": seed,
        # The memory allocator setting (runtime.tune_memory_allocation); the Ray driver
        # passes its own on to the workers, so this is the workers' setting too.
        "allocator": runtime.allocator_setting(),
        "startup_seconds": first_batch_time - run_start,
        "train_time_seconds": sum(epoch_times),
        "epoch_times_seconds": list(epoch_times),
        "images_per_second": runtime.steady_state_throughput(plan["samples_per_epoch"], epoch_times),
        "history": history,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        # Predicted class of each test example, in order: for the confusion matrix.
        "test_predictions": [int(label) for label in test_predictions],
        "versions": runtime.versions(),
        "host": runtime.host_facts(),
        "command": runtime.python_command(),
    }


def finish(record, run_start, path):
    """Stamp the total time and write the record atomically."""
    record["total_time_seconds"] = time.time() - run_start
    runtime.write_json_atomic(path, record)
    return record


def load_run(path):
    """Read one run's JSON, with a clear error when it is missing or malformed."""
    if not os.path.exists(path):
        raise ValueError(f"{path} does not exist. Run the training that writes it first "
                         "(./scripts/run-benchmark.sh runs both).")
    try:
        with open(path, encoding="utf-8") as source:
            record = json.load(source)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}). Delete it and run the training again.") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} does not hold a results object. Delete it and run the training again.")
    missing = [key for key in RUN_KEYS if key not in record]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: it was not written by this version of "
                         "the training code. Run the training again.")
    return record
