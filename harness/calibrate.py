"""Size the default run to the machine: a few seconds of the baseline's training step on one
core choose the training-set size, so that the baseline trains for about 2.5 minutes on any CPU.

A fixed 4,096 images trained for over 3 minutes on a slow 2-core VM (about 60 images/s a core)
and for about a minute on a fast one (about 184): there Ray's fixed start-up ate the gain, and
the run said that Ray made training slower. Sized to the machine, the default run shows the
regime where data parallelism pays everywhere, and still prints its break-even. The size is a
whole number of global batches, at least the recipe's default and at most MAXIMUM_TRAIN_SIZE.
An explicit TRAIN_SIZE always wins; --smoke-test and --full keep their own sizes.

./scripts/run-benchmark.sh runs it (local target, default mode), pinned to the baseline's
core, before the baseline; it prints `TRAIN_SIZE=<n>` and writes calibration.json:
    .venv/bin/python -m harness.calibrate --num-workers 2 --results-dir results/x
"""

import argparse
import os
import sys
import time

from harness import results
from lesson import data, recipe as recipes, workarounds
from lesson.model import create_model

TARGET_SECONDS = 150.0  # the baseline's training time the default run aims at
MEASURE_SECONDS = 6.0   # timed steps, after two untimed ones (graph tracing)
MAXIMUM_TRAIN_SIZE = 32_768
CALIBRATION_FILE = "calibration.json"


def measure_images_per_second(recipe, seconds=MEASURE_SECONDS):
    """The baseline's training speed on this process's CPUs: its model, its global batch and
    `recipe.cpus_per_worker` threads in Keras' fit(), timed over `seconds` of steps after two
    untimed ones (fit's per-step cost is the baseline's; train_on_batch's is larger)."""
    tf = workarounds.import_tensorflow(recipe.cpus_per_worker)
    batch = recipe.global_batch_size
    dataset = data.load_dataset("synthetic", 4 * batch, batch, seed=recipe.seed)  # cifar10's shapes too
    train = data.make_train_dataset(dataset.x_train, dataset.y_train, batch, num_shards=1, shard_index=0,
                                    seed=recipe.seed)
    ends = []

    class Clock(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            ends.append(time.perf_counter())
            if len(ends) >= 5 and ends[-1] - ends[1] >= seconds:
                self.model.stop_training = True

    create_model(recipe.learning_rate).fit(train, steps_per_epoch=100_000, epochs=1, verbose=0, callbacks=[Clock()])
    return (len(ends) - 2) * batch / (ends[-1] - ends[1])


def choose_train_size(images_per_second, recipe, target_seconds=TARGET_SECONDS):
    """Whole global batches for about `target_seconds` of the baseline's training, within
    [the recipe's default, MAXIMUM_TRAIN_SIZE]."""
    batch = recipe.global_batch_size
    wanted = images_per_second * target_seconds / recipe.epochs
    floor = recipes.mode_defaults("default")["train_size"]
    size = int(min(max(wanted, floor), MAXIMUM_TRAIN_SIZE)) // batch * batch
    return max(size, batch)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    recipes.add_arguments(parser)
    parser.add_argument("--results-dir", help="also write calibration.json there")
    parser.add_argument("--measure-seconds", type=float, default=MEASURE_SECONDS,
                        help=f"how long to time the step (default {MEASURE_SECONDS:g})")
    args = parser.parse_args(argv)
    try:
        workarounds.restart_with_allocator_environment("harness.calibrate")  # as the baseline runs
        recipe = recipes.from_args(args)
        if args.results_dir:
            results.check_writable(args.results_dir)
        speed = measure_images_per_second(recipe, args.measure_seconds)
        size = choose_train_size(speed, recipe)
    except ValueError as error:
        print(f"calibrate: error: {error}", file=sys.stderr)
        return 2
    seconds = size * recipe.epochs / speed
    workarounds.log(f"calibration: {speed:.1f} images/s on {recipe.cpus_per_worker} CPU(s) at batch "
                    f"{recipe.global_batch_size}: TRAIN_SIZE={size}, about {seconds:.0f} s of baseline training "
                    f"over {recipe.epochs} epochs (TRAIN_SIZE=<n> sets it yourself)")
    if args.results_dir:
        results.write_json_atomic(os.path.join(args.results_dir, CALIBRATION_FILE), {
            "images_per_second": speed, "train_size": size, "target_seconds": TARGET_SECONDS,
            "expected_baseline_training_seconds": seconds, "global_batch_size": recipe.global_batch_size,
            "cpus": recipe.cpus_per_worker, "epochs": recipe.epochs, "host": results.host_facts()})
    print(f"TRAIN_SIZE={size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
