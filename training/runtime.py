"""What both entry points need around training: TensorFlow set-up, timing, facts, files.

Import TensorFlow only through `import_tensorflow()`: tf-keras must be selected with
TF_USE_LEGACY_KERAS=1 *before* TensorFlow is first imported, in the driver and in every
Ray worker, or Keras 3 is used and `fit` fails under MultiWorkerMirroredStrategy.
"""

import hashlib
import json
import os
import platform
import socket
import sys
import tempfile
import time

import numpy as np


# How TensorFlow's CPU tensors get their memory: "tuned" (the default) or "system".
ALLOCATOR_VARIABLE = "DEMO_ALLOCATOR"
ALLOCATORS = ("tuned", "system")
# glibc's mallopt() parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def allocator_setting():
    """The DEMO_ALLOCATOR setting of this process, checked ("tuned" when unset)."""
    choice = os.environ.get(ALLOCATOR_VARIABLE, "tuned")
    if choice not in ALLOCATORS:
        raise ValueError(f"{ALLOCATOR_VARIABLE} must be one of {', '.join(ALLOCATORS)}; got '{choice}'. "
                         "Unset it for the default (tuned).")
    return choice


def allocator_environment(choice):
    """Environment variables that apply the allocator setting from a process's start
    (for Ray workers, whose threads and malloc arenas exist before training code runs)."""
    if choice != "tuned":
        return {}
    return {"TF_CPU_ALLOCATOR_USE_BFC": "true", "MALLOC_ARENA_MAX": "1",
            "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}


def restart_with_allocator_environment(module):
    """Run this entry point again, once, with the allocator's variables in its environment.

    glibc reads MALLOC_* when the process starts; set later through mallopt() they left
    a MultiWorkerMirroredStrategy process with about ten times the page faults. Ray
    workers get the variables from the driver's runtime_env; an entry point started by
    hand gets them here, before TensorFlow is imported, so that every process of a
    comparison starts with the same allocator. Does nothing when they are already set.
    """
    wanted = allocator_environment(allocator_setting())
    if all(os.environ.get(name) == value for name, value in wanted.items()):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module] + sys.argv[1:], {**os.environ, **wanted})


def tune_memory_allocation():
    """Keep freed tensor memory in the process instead of giving it back to the OS.

    By default TensorFlow allocates CPU tensors with malloc. Under
    MultiWorkerMirroredStrategy the freed memory went back to the OS and was faulted in
    again at the next step: about 150,000 minor page faults per training step of this CNN
    at batch 64 (plain Keras: about 8,000), which made every kernel about 30% slower. With
    TensorFlow's BFC allocator (it keeps what it frees), one malloc arena, and glibc told
    neither to mmap tensors nor to trim its heap, both paths take a few thousand faults
    per step and the strategy's cost per image falls from about 25% to a few percent
    (`python -m training.strategy_overhead` measures both settings). Applied identically
    to the baseline and to every Ray worker, best from the process start
    (allocator_environment). DEMO_ALLOCATOR=system turns it off.
    Returns the setting in use. Call before TensorFlow is imported.
    """
    choice = allocator_setting()
    if choice == "system":
        return choice
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            return choice  # not glibc (e.g. musl): the BFC allocator alone still helps
        libc.mallopt(_M_ARENA_MAX, 1)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)  # glibc's largest; bigger blocks still mmap
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return choice


def import_tensorflow(cpus):
    """Select tf-keras, import TensorFlow and give it `cpus` threads. Returns the module."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    # Before the import where possible; mallopt() also works later (a reused Ray worker).
    tune_memory_allocation()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # oneDNN's own OpenMP pool follows OMP_NUM_THREADS; Ray sets it on workers, we set it
    # everywhere so that the baseline gets the same budget.
    os.environ["OMP_NUM_THREADS"] = str(cpus)
    import tensorflow as tf

    # MultiWorkerMirroredStrategy logs every collective at INFO, twice; keep warnings.
    tf.get_logger().setLevel("WARNING")
    if not tf.keras.Model.__module__.startswith("tf_keras"):
        raise RuntimeError(
            f"tf.keras is {tf.keras.Model.__module__}, not tf-keras: TensorFlow was imported "
            "before TF_USE_LEGACY_KERAS=1 was set. Import TensorFlow only through "
            "training.runtime.import_tensorflow().")
    # Ray sets nothing but OMP_NUM_THREADS; TensorFlow would otherwise size its pools to
    # every core of the machine and the workers would fight over them.
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(cpus)
    except RuntimeError:
        # Already initialised in this process (a second run in the same worker): keep it.
        pass
    disable_autotune_on_device_iterators(tf)
    return tf


def disable_autotune_on_device_iterators(tf):
    """Turn tf.data autotuning off in the per-device iterators tf.distribute builds.

    Under MultiWorkerMirroredStrategy, fit() reads its input through a MultiDeviceIterator
    whose per-device datasets TensorFlow creates with default options, so autotuning is on
    there even though our pipelines turn it off (data._pipeline_options). Destroying such
    an iterator at the end of fit() waits for its autotuning thread (the stack:
    ~IteratorResource -> RootDataset::Iterator -> LogicalThreadWrapper). Measured: 42 s of
    idle in 2 of 5 single-process runs, 0 s in 6 of 6 with this; in 2-worker Ray runs, 54 s
    and 66 s from the last epoch to the results, 8 s with this. TensorFlow offers no option for those datasets, so this wraps the
    private factory that builds them (TensorFlow 2.21); when it is missing (another
    version) nothing is changed. Returns True when the wrapper is in place.
    """
    from tensorflow.python.data.ops import multi_device_iterator_ops

    factory = getattr(multi_device_iterator_ops, "_create_device_dataset", None)
    if factory is None:
        return False
    if getattr(factory, "autotune_disabled", False):
        return True

    def create_device_dataset(*args, **kwargs):
        options = tf.data.Options()
        options.autotune.enabled = False
        return factory(*args, **kwargs).with_options(options)

    create_device_dataset.autotune_disabled = True
    create_device_dataset.wrapped = factory
    multi_device_iterator_ops._create_device_dataset = create_device_dataset
    return True


def versions():
    """Versions of the software that produced a result."""
    import tensorflow as tf
    import tf_keras

    found = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": tf_keras.__version__,
        "numpy": np.__version__,
    }
    try:
        import ray

        found["ray"] = ray.__version__
    except ImportError:
        found["ray"] = None
    return found


def host_facts():
    """The machine a result was measured on."""
    cpu_model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gib = None
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "memory_gib": memory_gib,
    }


def weights_checksum(weights):
    """sha256 of a list of numpy arrays: equal on every worker iff the models are equal."""
    digest = hashlib.sha256()
    for array in weights:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def steady_state_throughput(samples_per_epoch, epoch_times):
    """Images per second, leaving out the first epoch (graph tracing) when there are two or more."""
    steady = epoch_times[1:] if len(epoch_times) >= 2 else epoch_times
    total = sum(steady)
    return samples_per_epoch * len(steady) / total if total > 0 else None


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


def check_results_dir_writable(results_dir):
    """Fail before training, not after, when the results cannot be written."""
    try:
        os.makedirs(results_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(
            f"Cannot write results to '{results_dir}': {error.strerror}. "
            "Pass a writable folder with --results-dir (RESULTS_DIR in the scripts).") from None


def log(message):
    """A progress line, flushed at once so it shows through Ray's log forwarding.

    Written to stdout directly: Ray Train V2 turns print() on workers into a log record,
    which the root logger's several handlers would then print more than once.
    """
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stdout.flush()


def make_epoch_timer(tf, label, samples_per_epoch):
    """A Keras callback that times each epoch's training steps and prints a progress line.

    The epoch time runs from the epoch's first batch to its last training batch, so that
    per-epoch validation is not counted as training time in either run. Over the same
    span it notes the CPU time of this process and its minor page faults: a process
    that gets its whole core shows CPU seconds close to the epoch's seconds, and a
    well-behaved allocator a few thousand faults per step (see tune_memory_allocation).
    """
    import resource

    class EpochTimer(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_times = []
            self.first_batch_time = None
            self.history = []
            self._epoch_start = None
            self._last_batch_end = None
            self.epoch_cpu_seconds = []
            self.epoch_page_faults = []
            self._usage_start = None
            self._usage_end = None

        def on_train_batch_begin(self, batch, logs=None):
            now = time.time()
            if self.first_batch_time is None:
                self.first_batch_time = now
            if self._epoch_start is None:
                self._epoch_start = now
                self._usage_start = (time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

        def on_train_batch_end(self, batch, logs=None):
            self._last_batch_end = time.time()
            self._usage_end = (time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

        def on_epoch_end(self, epoch, logs=None):
            seconds = self._last_batch_end - self._epoch_start
            self.epoch_times.append(seconds)
            self.epoch_cpu_seconds.append(self._usage_end[0] - self._usage_start[0])
            self.epoch_page_faults.append(self._usage_end[1] - self._usage_start[1])
            self._epoch_start = None
            logs = {key: float(value) for key, value in (logs or {}).items()}
            self.history.append(dict(epoch=epoch + 1, seconds=seconds, **logs))
            summary = " ".join(f"{key}={value:.4f}" for key, value in logs.items())
            log(f"{label} epoch {epoch + 1}: {seconds:.1f}s, "
                f"{samples_per_epoch / seconds:.1f} img/s, {summary}")

    return EpochTimer()


def evaluate(model, x_test, y_test, batch_size):
    """Test loss, accuracy and predicted classes of a (non-distributed) model."""
    probabilities = model.predict(x_test, batch_size=batch_size, verbose=0)
    predictions = probabilities.argmax(axis=1)
    epsilon = 1e-7
    picked = probabilities[np.arange(len(y_test)), y_test]
    loss = float(-np.log(np.clip(picked, epsilon, 1.0)).mean())
    accuracy = float((predictions == y_test).mean())
    return loss, accuracy, predictions


def python_command():
    """How this interpreter was invoked, for the record."""
    return " ".join([os.path.basename(sys.executable)] + sys.argv)
