"""Plain Keras baseline: the CNN trained with model.fit in one process, on a fixed CPU budget.

This is the reference the Ray run is measured against. It gets the CPU budget of one Ray
worker (`--cpus`, default 1: TensorFlow's thread pools are sized to it) and the global batch
of the Ray run it is compared with, so both runs take the same optimizer steps over the same
examples. Diff it against ray_training.py to see what data parallelism adds.

Run from the repository root (./scripts/run-benchmark.sh runs it for you, with the Ray run):
    .venv/bin/python -m lesson.baseline_training --batch-size 128 --cpus 1
    .venv/bin/python -m lesson.baseline_training --smoke-test      # seconds, proves the path

Expect the default recipe to train for a few minutes on one core, with a test accuracy far
above the 10% of chance: the quick start's measured run is in docs/results/quickstart/.
"""

import argparse
import os
import sys
import time

from harness import records, results
from lesson import data, recipe as settings, workarounds
from lesson.model import create_model, evaluate, learning_rate


def train_baseline(run_settings, data_dir, results_dir):
    """Train in this process, evaluate, and write results_dir/baseline_results.json."""
    run_start = time.time()
    results.check_writable(results_dir)
    seed = run_settings["seed"]
    tf = workarounds.import_tensorflow(run_settings["cpus_per_worker"])
    tf.keras.utils.set_random_seed(seed)
    dataset = data.load_dataset(run_settings["dataset"], run_settings["train_size"], run_settings["test_size"],
                                data_dir=data_dir, seed=seed)
    plan = data.shard_plan(run_settings["train_size"], run_settings["batch_size"], num_workers=1)
    recorder = records.epoch_recorder(tf, "baseline", plan["samples_per_epoch"])
    # One pipeline over the whole training set, at the whole batch.
    train_dataset = data.make_train_dataset(tf, dataset.x_train, dataset.y_train, run_settings["batch_size"],
                                            num_shards=1, shard_index=0, seed=seed)
    model = create_model(tf, learning_rate(tf, run_settings, plan))
    records.log(f"baseline: {run_settings['dataset']} {run_settings['train_size']} train / "
                f"{run_settings['test_size']} test, {run_settings['epochs']} epochs, batch "
                f"{run_settings['batch_size']}, {run_settings['cpus_per_worker']} CPU(s)")
    model.fit(train_dataset, epochs=run_settings["epochs"], steps_per_epoch=plan["steps_per_epoch"],
              validation_data=data.make_eval_dataset(tf, dataset.x_test, dataset.y_test, plan["global_batch_size"]),
              callbacks=[recorder], verbose=0)
    test_loss, test_accuracy, predictions = evaluate(model, dataset.x_test, dataset.y_test,
                                                     run_settings["batch_size"])
    state = recorder.state()
    record = results.run_record("baseline", run_settings, plan, run_start, state, test_loss, test_accuracy,
                                predictions)
    # CPU seconds and page faults per epoch: the per-image cost the Ray workers' records are compared with.
    record.update(epoch_cpu_seconds=state["epoch_cpu_seconds"], epoch_page_faults=state["epoch_page_faults"])
    path = os.path.join(results_dir, results.BASELINE_FILE)
    results.write(record, run_start, path)
    records.log(f"baseline: {results.summary_line(record)} -> {path}")
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    settings.add_recipe_arguments(parser)
    parser.add_argument("--batch-size", type=settings.positive_int, default=None,
                        help="examples per step; use the Ray run's global batch to compare "
                             f"(default {settings.DEFAULT_BATCH_SIZE})")
    parser.add_argument("--cpus", type=settings.positive_int, default=settings.DEFAULT_CPUS,
                        help="threads TensorFlow may use: the same budget as one Ray worker "
                             f"(default {settings.DEFAULT_CPUS})")
    args = parser.parse_args(argv)
    try:
        workarounds.restart_with_allocator_environment("lesson.baseline_training")
        run_settings = dict(settings.resolve_sizes(args), num_workers=1, cpus_per_worker=args.cpus,
                            learning_rate=args.learning_rate, seed=args.seed, lr_scaling=args.lr_scaling)
        train_baseline(run_settings, args.data_dir, args.results_dir)
    except ValueError as error:
        print(f"baseline_training: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
