"""How much a tf.distribute strategy alone costs, in one process and without Ray.

Trains the CNN for a few steps three ways on one core: plain Keras, a one-device
MirroredStrategy, and a one-worker MultiWorkerMirroredStrategy (the strategy Ray Train
uses), under both memory allocator settings of workarounds.tune_memory_allocation: "system"
(TensorFlow's default, malloc) and "tuned" (what the benchmark uses). Each measurement
runs in its own process (TensorFlow's thread pools, allocator and TF_CONFIG are per
process), pinned to core 0 when `taskset` exists. It prints images per wall-second,
images per CPU-second of the training process (what to compare on a busy machine, since
other load stretches wall time but not the CPU work a step needs) and the minor page
faults per step.

Run (from the repository root, inside .venv; six TensorFlow processes one after the other,
minutes with the defaults):
    python -m tools.strategy_overhead
    python -m tools.strategy_overhead --allocator system --batch-size 128 --steps 15

What it found on the 2-core VM of the README: docs/results/strategy_overhead/output.txt
(the table it printed, with its command and machine), explained in docs/PERFORMANCE.md.
With the system allocator the strategies needed more CPU per image than plain Keras,
because their freed tensor memory went back to the OS and was faulted in again every
step; with the tuned allocator the three modes were close.
"""

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time

from lesson import data, recipe as settings, workarounds
from lesson.model import create_model

MODES = ("plain", "mirrored", "multiworker")
ALLOCATOR_CHOICES = workarounds.ALLOCATORS + ("both",)


def measure(mode, batch_size, steps, warmup_steps, seed=42):
    """Train `steps` steps in this process; return images per wall- and per CPU-second."""
    if mode == "multiworker":
        # A one-worker cluster: the same code path as a Ray Train worker, with no peer.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}"]},
                                              "task": {"type": "worker", "index": 0}})
    tf = workarounds.import_tensorflow(1)
    x, y = data.synthetic_split("train", batch_size * 8, seed)

    def dataset_fn(_input_context=None):
        return data.make_train_dataset(x, y, batch_size, num_shards=1, shard_index=0, seed=seed)

    if mode == "plain":
        model = create_model(settings.Recipe.learning_rate)
        train_input = dataset_fn()
    else:
        strategy = (tf.distribute.MirroredStrategy(["/cpu:0"]) if mode == "mirrored"
                    else tf.distribute.MultiWorkerMirroredStrategy())
        with strategy.scope():
            model = create_model(settings.Recipe.learning_rate)
        train_input = tf.keras.utils.experimental.DatasetCreator(dataset_fn)
    wall, cpu, faults = [], [], []

    class StepClock(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            wall.append(time.time())
            cpu.append(time.process_time())
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

    model.fit(train_input, epochs=1, steps_per_epoch=warmup_steps + steps, callbacks=[StepClock()], verbose=0)
    images = batch_size * steps
    return {"mode": mode, "allocator": os.environ.get(workarounds.ALLOCATOR_VARIABLE, "tuned"),
            "batch_size": batch_size, "steps": steps,
            "images_per_second": images / (wall[-1] - wall[warmup_steps - 1]),
            "images_per_cpu_second": images / (cpu[-1] - cpu[warmup_steps - 1]),
            "page_faults_per_step": (faults[-1] - faults[warmup_steps - 1]) / steps}


def run_all(batch_size, steps, warmup_steps, allocators=workarounds.ALLOCATORS):
    """Measure every mode under every allocator setting, each in a fresh process."""
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    found = []
    for allocator in allocators:
        for mode in MODES:
            command = pin + [sys.executable, "-m", "tools.strategy_overhead", "--mode", mode,
                             "--batch-size", str(batch_size), "--steps", str(steps),
                             "--warmup-steps", str(warmup_steps)]
            # From the process start, as the benchmark's processes get it.
            env = dict(os.environ, **{workarounds.ALLOCATOR_VARIABLE: allocator},
                       **workarounds.allocator_environment(allocator))
            finished = subprocess.run(command, capture_output=True, text=True, env=env)
            lines = [line for line in finished.stdout.splitlines() if line.startswith("{")]
            if finished.returncode != 0 or not lines:
                raise RuntimeError(f"measuring '{mode}' with the {allocator} allocator failed:\n"
                                   f"{finished.stderr[-2000:]}")
            found.append(json.loads(lines[-1]))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=settings.positive_int, default=settings.Recipe.batch_size,
                        help=f"images per step (default {settings.Recipe.batch_size})")
    parser.add_argument("--steps", type=settings.positive_int, default=30,
                        help="timed steps per mode (default 30)")
    parser.add_argument("--warmup-steps", type=settings.positive_int, default=10,
                        help="untimed steps first, for graph tracing (default 10)")
    parser.add_argument("--allocator", choices=ALLOCATOR_CHOICES, default="both",
                        help="memory allocator setting(s) to measure (default both; see "
                             "lesson/workarounds.py, section 2)")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="measure one mode in this process and print it as JSON (used internally)")
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(measure(args.mode, args.batch_size, args.steps, args.warmup_steps)), flush=True)
        return 0
    allocators = workarounds.ALLOCATORS if args.allocator == "both" else (args.allocator,)
    try:
        found = run_all(args.batch_size, args.steps, args.warmup_steps, allocators)
    except RuntimeError as error:
        print(f"strategy_overhead: error: {error}", file=sys.stderr)
        return 1
    print(format_table(found))
    return 0


def format_table(found):
    """The measurements as a table; each mode's CPU per image against plain Keras under
    the same allocator setting."""
    lines = [f"{'mode':14} {'allocator':10} {'images/s':>10} {'images/CPU-s':>13} "
             f"{'CPU per image vs plain':>24} {'page faults/step':>17}"]
    for result in found:
        plain = next(other for other in found
                     if other["mode"] == "plain" and other["allocator"] == result["allocator"])
        extra = plain["images_per_cpu_second"] / result["images_per_cpu_second"] - 1
        lines.append(f"{result['mode']:14} {result['allocator']:10} {result['images_per_second']:10.1f} "
                     f"{result['images_per_cpu_second']:13.1f} {extra:+23.0%} "
                     f"{result['page_faults_per_step']:17.0f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
