"""The results contract: the file names, the keys every run's JSON holds, and how the Ray
run's JSON is put together from its workers' records.

compare.py, report.py and the docs read these keys (docs/RESULTS.md lists them); change
them here and there together.
"""

import json
import os
import platform
import shlex
import socket
import sys
import tempfile
import time

import numpy as np

from harness import steady_state, step_timing, switches
from lesson import workarounds

BASELINE_FILE = "baseline_results.json"
COMPARISON_FILE = "comparison.json"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Keys every run's JSON must hold (compare.py refuses a file without them).
RUN_KEYS = (
    "training_type", "dataset", "train_size", "test_size", "epochs_completed",
    "batch_size_per_worker", "global_batch_size", "cpus_per_worker", "num_workers",
    "startup_seconds", "train_time_seconds", "total_time_seconds", "epoch_times_seconds",
    "images_per_second", "test_accuracy", "test_loss", "versions", "host",
)
# What each Ray worker's entry in the Ray JSON holds.
WORKER_KEYS = ("rank", "node_id", "hostname", "pid", "input_pipelines", "steps_per_epoch",
               "samples_per_epoch", "weights_checksum", "trainable_weights_checksum",
               "epoch_times_seconds", "epoch_cpu_seconds", "epoch_page_faults", "epoch_step_parts",
               "fit_seconds")


def ray_file(num_workers):
    return f"ray_results_{num_workers}workers.json"


def check_writable(results_dir):
    """Fail before training, not after, when the results cannot be written."""
    try:
        os.makedirs(results_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(
            f"Cannot write results to '{results_dir}': {error.strerror}. "
            "Pass a writable folder with --results-dir (RESULTS_DIR in the scripts).") from None


def record_settings(recipe, baseline=False):
    """The recipe as a results record holds it, built once for every writer: the Ray run's with
    its all-reduce dtype (DEMO_ALLREDUCE_DTYPE); the baseline's as one process at the global batch."""
    if baseline:
        return recipe.as_dict() | {"num_workers": 1, "batch_size": recipe.global_batch_size,
                                   "allreduce_dtype": "float32"}
    return recipe.as_dict() | {"allreduce_dtype": switches.allreduce_dtype()}


def run_record(training_type, settings, plan, run_start, recorder, test_loss, test_accuracy,
               test_predictions):
    """The keys shared by the baseline and the Ray results, computed the same way for both.

    `settings`: record_settings(recipe), the recipe with the all-reduce dtype (the baseline's
    as one process at the global batch). `recorder`: what
    the epoch timer noted (harness/epoch_timing.py) (for Ray, the chief worker's, with the epoch times of the
    slowest worker).
    - startup_seconds: from the entry point's start to the first training batch
      (TensorFlow import, data, model; for Ray also connecting and starting workers).
    - train_time_seconds: the training steps, summed over epochs (validation excluded).
    - total_time_seconds: entry point start to results written, everything included.
    """
    epoch_times = recorder["epoch_times_seconds"]
    steady = steady_state.SteadyState(plan["samples_per_epoch"], epoch_times)
    return {
        "training_type": training_type,
        "dataset": settings["dataset"],
        "train_size": settings["train_size"],
        "test_size": settings["test_size"],
        "epochs_completed": len(epoch_times),
        "epochs_requested": settings["epochs"],
        "batch_size_per_worker": settings["batch_size"],
        "global_batch_size": plan["global_batch_size"],
        "steps_per_epoch": plan["steps_per_epoch"],
        "samples_per_epoch": plan["samples_per_epoch"],
        "cpus_per_worker": settings["cpus_per_worker"],
        "num_workers": settings["num_workers"],
        "learning_rate": settings["learning_rate"],
        "lr_scaling": settings["lr_scaling"],
        # The gradients' type in the all-reduce (the Ray run; float32 is no compression).
        "allreduce_dtype": settings["allreduce_dtype"],
        "seed": settings["seed"],
        # The memory allocator setting (workarounds.tune_memory_allocation); the Ray driver
        # passes its own on to the workers, so this is the workers' setting too.
        "allocator": workarounds.allocator_setting(),
        "startup_seconds": recorder["first_batch_time"] - run_start,
        "train_time_seconds": sum(epoch_times),
        "epoch_times_seconds": list(epoch_times),
        # Over the epochs the steady-state rule counts (harness/steady_state.py); None when the
        # run did not settle, and steady_state says why.
        "images_per_second": steady.images_per_second,
        "steady_state": steady.as_dict(),
        "history": recorder["history"],
        # Seconds per step in input, compute, all-reduce, optimizer (step_timing.py).
        "step_breakdown": step_timing.summarize(recorder.get("epoch_step_parts") or []),
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        # Predicted class of each test example, in order: for the confusion matrix.
        "test_predictions": [int(label) for label in test_predictions],
        "versions": versions(),
        "host": host_facts(),
        "command": pasteable_command(),
    }


def ray_record(settings, plan, run_start, trainer_start, cluster, worker_records):
    """The Ray run's record from its workers' records (collector.worker_record)."""
    latest = {}
    for record in worker_records:
        latest[record["rank"]] = record  # a restarted worker group reports again: keep the last
    workers = [latest[rank] for rank in sorted(latest)]
    if len(workers) != settings["num_workers"] or 0 not in latest:
        raise RuntimeError(f"Expected records from {settings['num_workers']} workers, got ranks {sorted(latest)}.")
    test_loss, test_accuracy, test_predictions = merge_test_shares(workers, settings["test_size"])
    # Workers move in lockstep (every step waits for the all-reduce): an epoch takes as
    # long as its slowest worker.
    slowest = [max(times) for times in zip(*(worker["epoch_times_seconds"] for worker in workers))]
    first_batch_time = min(worker["first_batch_time"] for worker in workers)
    chief = dict(latest[0], epoch_times_seconds=slowest, first_batch_time=first_batch_time)
    record = run_record("ray_train", settings, plan, run_start, chief, test_loss, test_accuracy,
                        test_predictions)
    checksums = {worker["weights_checksum"] for worker in workers}
    record.update(
        # Over all workers: every step of every worker counts once.
        step_breakdown=step_timing.summarize(*(worker["epoch_step_parts"] for worker in workers)),
        trainer_start_to_first_batch_seconds=first_batch_time - trainer_start,
        weights_identical=len(checksums) == 1,
        cluster=cluster,
        workers=[{key: worker[key] for key in WORKER_KEYS}
                 | {"test_examples": worker["test_share"]["count"],
                    "step_breakdown": step_timing.summarize(worker["epoch_step_parts"])}
                 for worker in workers],
    )
    return record


def merge_test_shares(workers, test_size):
    """Test loss, accuracy and predictions of the whole test set from the workers' shares.

    Worker k of N evaluated examples k, k+N, ...; its predictions go back to those places.
    """
    world_size = len(workers)
    predictions = [None] * test_size
    counted = sum(worker["test_share"]["count"] for worker in workers)
    shares_fit = all(len(range(worker["rank"], test_size, world_size)) == len(worker["test_share"]["predictions"])
                     for worker in workers)
    if shares_fit:
        for worker in workers:
            predictions[worker["rank"]::world_size] = worker["test_share"]["predictions"]
    if not shares_fit or counted != test_size or any(label is None for label in predictions):
        raise RuntimeError(f"The workers evaluated {counted} test examples, not {test_size}.")
    loss = sum(worker["test_share"]["loss_sum"] for worker in workers) / test_size
    accuracy = sum(worker["test_share"]["correct"] for worker in workers) / test_size
    return loss, accuracy, predictions


def write(record, run_start, path):
    """Stamp the total time and write the record atomically."""
    record["total_time_seconds"] = time.time() - run_start
    write_json_atomic(path, record)
    return record


def summary_line(record):
    """The line each entry point logs when its results are written."""
    speed = record["images_per_second"]
    throughput = f"{speed:.1f} img/s" if speed is not None else f"no steady images/s ({record['steady_state']['verdict']})"
    return (f"test accuracy {record['test_accuracy']:.4f}, {throughput}, "
            f"train {record['train_time_seconds']:.1f}s, total {record['total_time_seconds']:.1f}s")


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


def write_json_atomic(path, data):
    """Write JSON so that a reader never sees half a file: temp file, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(temp_path, path)
    except BaseException:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
        raise


def versions():
    """Versions of the software that produced a result, read from the installed packages
    (importing TensorFlow to ask would cost seconds in a driver that never trains)."""
    from importlib import metadata

    def installed(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "tensorflow": installed("tensorflow"),
            "keras": installed("tf-keras"), "numpy": np.__version__, "ray": installed("ray")}


def host_facts():
    """The machine a result was measured on: its CPU by name, family and model (family 25 is
    AMD Zen 3, 26 Zen 5; Intel's are family 6), cores and memory."""
    cpu_model, cpu_family, cpu_model_number = platform.processor() or platform.machine(), None, None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            fields = dict(line.split(":", 1) for line in cpuinfo.read().split("\n\n")[0].splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        cpu_model = fields.get("model name", cpu_model)
        cpu_family, cpu_model_number = fields.get("cpu family"), fields.get("model")
    except OSError:
        pass
    memory_gib = None
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "cpu_model": cpu_model,
            "cpu_family": cpu_family, "cpu_model_number": cpu_model_number,
            "logical_cores": os.cpu_count(), "memory_gib": memory_gib}


def pasteable_command():
    """This process's command as a user would type it from the repository root:
    `.venv/bin/python -m lesson.X ...` (or `python -m ...` outside the repository's .venv,
    e.g. in a pod), with paths inside the repository made relative to it."""
    interpreter = os.path.basename(sys.executable)
    if os.path.realpath(sys.prefix) == os.path.realpath(os.path.join(REPO_ROOT, ".venv")):
        interpreter = ".venv/bin/python"
    script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    package_dir = os.path.dirname(script)
    if os.path.dirname(package_dir) == REPO_ROOT and script.endswith(".py"):
        program = ["-m", os.path.basename(package_dir) + "." + os.path.basename(script)[:-3]]
    else:
        program = [sys.argv[0]] if sys.argv else []

    def relative(argument):
        if os.path.isabs(argument) and os.path.realpath(argument).startswith(os.path.realpath(REPO_ROOT) + os.sep):
            return os.path.relpath(os.path.realpath(argument), os.path.realpath(REPO_ROOT))
        return argument

    return " ".join(shlex.quote(part) for part in [interpreter, *program, *map(relative, sys.argv[1:])])

