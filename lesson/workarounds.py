"""Workarounds for the versions this demo pins. Skip this module when learning Ray Train:
nothing in it is part of the lesson; each piece says what it works around, how it was
measured, and the versions it applies to.

Pinned (requirements.txt): TensorFlow 2.21.0, tf-keras 2.21.0, Ray 2.60.0, Python 3.11;
the allocator settings need glibc (Linux). Import TensorFlow only through
`import_tensorflow()`, which applies all of them in the right order.

1. `use_tf_keras`: Keras 3's fit() fails under MultiWorkerMirroredStrategy.
2. `tune_memory_allocation`, `restart_with_allocator_environment`: tensor memory faulted in at every step.
3. `disable_autotune_on_device_iterators`: the end of fit() sat idle for up to a minute.
4. `quiet_cuda_probe`: the CUDA-enabled wheel prints CUDA errors on every CPU-only machine.
5. Thread pools: Ray sets OMP_NUM_THREADS on its workers and nothing else.
7. `log`: Ray Train V2 prints a worker's print() through several log handlers.
8. `ray_train_tensorflow_without_tensorflow`: Ray Train's package imports TensorFlow everywhere.
9. `fewer_helper_actors`, `ends_with_its_driver`: Ray Train's helper actors a run does not need.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
import time

# 1. tf-keras, not Keras 3 (TensorFlow 2.21, tf-keras 2.21): Keras 3's model.fit fails under
# MultiWorkerMirroredStrategy ("Attempt to convert a value (PerReplica...)", ray-project/ray
# issue 47464). TF_USE_LEGACY_KERAS=1 makes tf.keras the tf-keras package, but only if it
# is set before TensorFlow is first imported: importing the `lesson` package sets it.
LEGACY_KERAS_VARIABLE = "TF_USE_LEGACY_KERAS"


def use_tf_keras():
    """Select tf-keras for every later TensorFlow import in this process."""
    os.environ[LEGACY_KERAS_VARIABLE] = "1"


# 2. The memory allocator (TensorFlow 2.21 on glibc). Under the strategy, freed CPU tensors went
# back to the OS and were faulted in again at the next step: about 150,000 minor page faults a
# step of this CNN at batch 64 (plain Keras: about 8,000), every kernel about 30% slower.
# TensorFlow's BFC allocator (it keeps what it frees), one malloc arena, and glibc told neither to
# mmap tensors nor to trim its heap: a few thousand faults a step, and the strategy's CPU cost per
# image from about 25% to a few percent (`python -m tools.strategy_overhead`). glibc reads MALLOC_*
# at a process's start: Ray workers get them through the driver's runtime_env, an entry point by
# re-executing itself once. DEMO_ALLOCATOR=system turns all of it off.
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
    """The environment variables that apply an allocator setting from a process's start."""
    if choice != "tuned":
        return {}
    return {"TF_CPU_ALLOCATOR_USE_BFC": "true", "MALLOC_ARENA_MAX": "1",
            "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}


def restart_with_allocator_environment(module):
    """Run this entry point again, once, with the allocator's variables in its environment.

    Set later through mallopt() they left a MultiWorkerMirroredStrategy process with about
    ten times the page faults, so every process of a comparison starts with them. Does
    nothing when they are already set. Call before TensorFlow is imported.
    """
    wanted = allocator_environment(allocator_setting())
    if all(os.environ.get(name) == value for name, value in wanted.items()):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module] + sys.argv[1:], {**os.environ, **wanted})


def tune_memory_allocation():
    """Apply the allocator setting to this process as far as it still can (mallopt); the
    environment variables above do it from the start. Returns the setting in use."""
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


def ray_worker_settings():
    """The runtime_env entries that give Ray's workers what this process has (they get their
    environment from the node, not the driver): tf-keras, the allocator setting, the quiet
    TensorFlow log level, and a set-up hook for sections 4 and 8."""
    allocator = allocator_setting()
    # The harness' measurement switches (harness/switches.py): the workers must see them too.
    passed_on = {name: value for name, value in os.environ.items() if name.startswith("DEMO_")}
    return {"env_vars": {LEGACY_KERAS_VARIABLE: "1", "TF_CPP_MIN_LOG_LEVEL": "2", ALLOCATOR_VARIABLE: allocator,
                         **allocator_environment(allocator), **passed_on},
            "worker_process_setup_hook": "lesson.workarounds.prepare_worker_process"}


def prepare_worker_process():
    """Ray's worker process set-up hook (runs before any task): sections 4 and 8."""
    on_first_import("tensorflow", quietly)
    ray_train_tensorflow_without_tensorflow(lazily=True)


# 3. tf.data autotuning in tf.distribute's per-device iterators (TensorFlow 2.21). Under the
# strategy, fit() reads its input through a MultiDeviceIterator whose per-device datasets have
# autotuning on, whatever our pipelines say; destroying it at the end of fit() waits for the
# autotuning thread (py-spy: ~IteratorResource -> RootDataset::Iterator -> LogicalThreadWrapper).
# Measured: 42 s idle in 2 of 5 single-process runs, 0 s in 6 of 6 with this; in 2-worker Ray
# runs, 54 s and 66 s from the last epoch to the results, 8 s with this. No option reaches those
# datasets, so this wraps their private factory; where it is missing, nothing is changed.
def disable_autotune_on_device_iterators(tf):
    """Wrap tf.distribute's per-device dataset factory to turn autotuning off. Returns True
    when the wrapper is in place."""
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


# 4. CUDA noise (TensorFlow 2.21). tf-keras pins the CUDA-built `tensorflow` wheel, so without a
# GPU every process printed, as TensorFlow loaded and first listed its devices: "All log messages
# before absl::InitializeLog() is called...", "cudart_stub.cc:31] Could not find cuda drivers..."
# and "cuda_platform.cc:52] failed call to cuInit". They come before TensorFlow's logging is set
# up (TF_CPP_MIN_LOG_LEVEL and CUDA_VISIBLE_DEVICES do not hide them), so meanwhile this sends
# file descriptor 2 to a temporary file, then passes on every line except those three.
CUDA_NOISE = re.compile(r"All log messages before absl::InitializeLog\(\) is called|"
                        r"cudart_stub\.cc:\d+\] Could not find cuda drivers|"
                        r"cuda_platform\.cc:\d+\] failed call to cuInit")
# The prefix of absl's log lines: severity, date, time, thread ("I0000 00:00:1796.5   7012 ").
LOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ ")


@contextlib.contextmanager
def quiet_cuda_probe():
    """Drop the CUDA probe's messages from stderr while the block runs; keep all others, once
    each (the same message with another time stamp is a repeat)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept, seen = [], set()
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                message = LOG_PREFIX.sub("", line)  # TensorFlow prints oneDNN's notice twice
                if not CUDA_NOISE.search(line) and message not in seen:
                    seen.add(message)
                    kept.append(line)
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def on_first_import(name, replace):
    """Run `replace(exec_module)` instead of the loader's exec_module at the first import of
    `name`: a hook that removes itself when used, so a process that never imports it pays nothing."""
    class OnFirstImport(importlib.abc.MetaPathFinder):
        hooked = name
        def find_spec(self, fullname, path=None, target=None):
            if fullname != name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module = replace(spec.loader.exec_module)
            return spec

    if name not in sys.modules and not any(getattr(finder, "hooked", None) == name for finder in sys.meta_path):
        sys.meta_path.insert(0, OnFirstImport())


def quietly(load):
    """For on_first_import: TensorFlow's first import inside quiet_cuda_probe, whoever imports it
    (in a Ray worker, Ray Train's TensorFlow backend, before our training function runs)."""
    def exec_module(module):
        with quiet_cuda_probe():
            load(module)
    return exec_module


# 5. Thread pools (Ray 2.60, TensorFlow 2.21). Ray sets only OMP_NUM_THREADS on its workers, and
# TensorFlow sizes its pools to every core: the workers would fight over the cores. Same for the baseline.
def import_tensorflow(cpus):
    """Import TensorFlow with every workaround above, and `cpus` threads. Returns the module."""
    use_tf_keras()
    tune_memory_allocation()  # before the import where possible; mallopt() also works later
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # oneDNN's OpenMP pool follows OMP_NUM_THREADS: set it for the baseline as Ray does.
    os.environ["OMP_NUM_THREADS"] = str(cpus)
    with quiet_cuda_probe():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the second CUDA probe happens here
    # MultiWorkerMirroredStrategy logs every collective at INFO, twice; keep warnings.
    tf.get_logger().setLevel("WARNING")
    if not tf.keras.Model.__module__.startswith("tf_keras"):
        raise RuntimeError(f"tf.keras is {tf.keras.Model.__module__}, not tf-keras: TensorFlow was imported "
                           "before TF_USE_LEGACY_KERAS=1 was set. Import it only through import_tensorflow().")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(cpus)
    except RuntimeError:
        pass  # already initialised in this process (a second run in the same worker): kept
    disable_autotune_on_device_iterators(tf)
    return tf


# 7. Progress lines from Ray workers (Ray 2.60, Train V2): Ray Train turns a worker's print() into
# a log record, which the root logger's several handlers print more than once.
def log(message):
    """A progress line written to stdout and flushed: it shows once through Ray's log forwarding."""
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stdout.flush()


# 8. TensorFlow in Ray Train's controller (Ray 2.60). `ray.train.tensorflow/__init__.py` imports
# TensorFlow only to fail early where it is missing, and the trainer's TensorflowConfig lives in
# that package, so every process that unpickles it (the driver, Ray Train's controller) paid a
# TensorFlow import, about 5 s of one core. This sets the package up without its __init__ (the
# workers import TensorFlow in the training function); in Ray's worker processes, at its first
# import only, so that the results collector imports no Ray Train at all.
def ray_train_tensorflow_without_tensorflow(lazily=False):
    """Make `ray.train.tensorflow` importable without TensorFlow; returns it (lazily: None)."""
    def without_init(load):
        def exec_module(package):  # instead of the package's __init__
            package.TensorflowConfig = importlib.import_module("ray.train.tensorflow.config").TensorflowConfig
            package.TensorflowTrainer = importlib.import_module(
                "ray.train.v2.tensorflow.tensorflow_trainer").TensorflowTrainer
            fewer_helper_actors()
        return exec_module

    on_first_import("ray.train.tensorflow", without_init)
    return None if lazily else importlib.import_module("ray.train.tensorflow")


# 9. Ray Train's helper actors a run does not need (Ray 2.60), each about 2 CPU seconds to start:
# a Ray Data DatasetManager, even without datasets; Ray Data's autoscaling coordinator, to pass
# resource requests to an autoscaler (none here; a pending placement group still asks one for nodes);
# a PlacementGroupCleaner, to free the workers' CPUs if the controller dies while its job's driver
# lives on (Tune: ray PR 58515), as a placement group outlives no driver (docs/results/startup_profile/).
def ends_with_its_driver(trainer):
    """Mark a trainer whose driver exits when its run ends: it gets no PlacementGroupCleaner."""
    trainer.demo_ends_with_its_driver = True
    return trainer


def fewer_helper_actors():
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    from ray.train.v2._internal.execution.scaling_policy import autoscaling_coordinator_client
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    create = DataParallelTrainer._create_default_callbacks  # patched once: 8 runs this once a process

    def create_default_callbacks(trainer):
        unneeded = (() if trainer.datasets else (DatasetsCallback,)) + (
            (PlacementGroupCleanerCallback,) if getattr(trainer, "demo_ends_with_its_driver", False) else ())
        return [each for each in create(trainer) if not isinstance(each, unneeded)]
    DataParallelTrainer._create_default_callbacks = create_default_callbacks
    client = autoscaling_coordinator_client.TrainAutoscalingCoordinatorClient
    client.send_resource_request = client.maybe_send_resource_request = client.cancel_resource_request = \
        lambda *args, **kwargs: None
