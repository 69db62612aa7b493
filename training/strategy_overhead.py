"""How much a tf.distribute strategy alone costs, in one process and without Ray.

Trains the CNN for a few steps three ways on one core: plain Keras, a one-device
MirroredStrategy, and a one-worker MultiWorkerMirroredStrategy (the strategy Ray Train
uses). Each mode runs in its own process (TensorFlow's thread pools and TF_CONFIG are per
process), pinned to core 0 when `taskset` exists. It prints images per wall-second and
images per CPU-second of the training process: the second is what to compare on a busy
machine, since other load stretches wall time but not the CPU work a step needs.

Run (from the repository root, inside .venv; about 5 minutes with the defaults):
    python -m training.strategy_overhead
    python -m training.strategy_overhead --batch-size 128 --steps 25

Measured on the 2-core VM of the README with the defaults (batch 64): plain Keras 42.1,
MirroredStrategy 34.4 and MultiWorkerMirroredStrategy 33.7 images per CPU-second.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time

from training import data, runtime, settings
from training.model import create_model

MODES = ("plain", "mirrored", "multiworker")


def measure(mode, batch_size, steps, warmup_steps, seed=42):
    """Train `steps` steps in this process; return images per wall- and per CPU-second."""
    if mode == "multiworker":
        # A one-worker cluster: the same code path as a Ray Train worker, with no peer.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}"]},
                                              "task": {"type": "worker", "index": 0}})
    tf = runtime.import_tensorflow(1)
    x, y = data.synthetic_split("train", batch_size * 8, seed)

    def dataset_fn(_input_context=None):
        return data.make_train_dataset(tf, x, y, batch_size, num_shards=1, shard_index=0, seed=seed)

    if mode == "plain":
        model = create_model(tf, settings.DEFAULT_LEARNING_RATE)
        train_input = dataset_fn()
    else:
        strategy = (tf.distribute.MirroredStrategy(["/cpu:0"]) if mode == "mirrored"
                    else tf.distribute.MultiWorkerMirroredStrategy())
        with strategy.scope():
            model = create_model(tf, settings.DEFAULT_LEARNING_RATE)
        train_input = tf.keras.utils.experimental.DatasetCreator(dataset_fn)
    wall, cpu = [], []

    class StepClock(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            wall.append(time.time())
            cpu.append(time.process_time())

    model.fit(train_input, epochs=1, steps_per_epoch=warmup_steps + steps, callbacks=[StepClock()], verbose=0)
    images = batch_size * steps
    return {"mode": mode, "batch_size": batch_size, "steps": steps,
            "images_per_second": images / (wall[-1] - wall[warmup_steps - 1]),
            "images_per_cpu_second": images / (cpu[-1] - cpu[warmup_steps - 1])}


def run_all(batch_size, steps, warmup_steps):
    """Measure every mode, each in a fresh process; return the list of results."""
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    found = []
    for mode in MODES:
        command = pin + [sys.executable, "-m", "training.strategy_overhead", "--mode", mode,
                         "--batch-size", str(batch_size), "--steps", str(steps),
                         "--warmup-steps", str(warmup_steps)]
        finished = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in finished.stdout.splitlines() if line.startswith("{")]
        if finished.returncode != 0 or not lines:
            raise RuntimeError(f"measuring '{mode}' failed:\n{finished.stderr[-2000:]}")
        found.append(json.loads(lines[-1]))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=settings.positive_int, default=settings.DEFAULT_BATCH_SIZE,
                        help=f"images per step (default {settings.DEFAULT_BATCH_SIZE})")
    parser.add_argument("--steps", type=settings.positive_int, default=30,
                        help="timed steps per mode (default 30)")
    parser.add_argument("--warmup-steps", type=settings.positive_int, default=10,
                        help="untimed steps first, for graph tracing (default 10)")
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="measure one mode in this process and print it as JSON (used internally)")
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(measure(args.mode, args.batch_size, args.steps, args.warmup_steps)), flush=True)
        return 0
    try:
        found = run_all(args.batch_size, args.steps, args.warmup_steps)
    except RuntimeError as error:
        print(f"strategy_overhead: error: {error}", file=sys.stderr)
        return 1
    plain = found[0]["images_per_cpu_second"]
    print(f"{'mode':14} {'images/s':>10} {'images/CPU-s':>13} {'CPU per image vs plain':>24}")
    for result in found:
        extra = plain / result["images_per_cpu_second"] - 1
        print(f"{result['mode']:14} {result['images_per_second']:10.1f} "
              f"{result['images_per_cpu_second']:13.1f} {extra:+23.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
