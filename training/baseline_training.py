"""Plain Keras baseline: the CNN trained with model.fit in one process on a fixed CPU budget.

This is the reference the Ray run is measured against. It gets the same CPU budget as
one Ray worker (`--cpus`, default 1: TensorFlow's thread pools are sized to it) and the
same global batch as the Ray run it is compared with, so both runs take the same number
of optimizer steps over the same examples.

Run (from the repository root, inside .venv):
    python -m training.baseline_training --batch-size 128 --cpus 1
    python -m training.baseline_training --smoke-test          # seconds, proves the path

Expect on one core of a 2-core laptop: about 50 images/s, 4096 synthetic images x 3
epochs in about 4-5 minutes, test accuracy well above the 10% of chance.
"""

import argparse
import os
import sys
import time

from training import data, results, runtime, settings
from training.model import create_model


def train_baseline(sizes, cpus, learning_rate, seed, data_dir, results_dir):
    """Train, evaluate and write results_dir/baseline_results.json. Returns the record."""
    run_start = time.time()
    runtime.check_results_dir_writable(results_dir)
    tf = runtime.import_tensorflow(cpus)
    tf.keras.utils.set_random_seed(seed)
    dataset = data.load_dataset(sizes["dataset"], sizes["train_size"], sizes["test_size"],
                                data_dir=data_dir, seed=seed)
    batch_size = sizes["batch_size"]
    plan = data.shard_plan(sizes["train_size"], batch_size, num_workers=1)
    train_dataset = data.make_train_dataset(tf, dataset.x_train, dataset.y_train, batch_size,
                                            num_shards=1, shard_index=0, seed=seed)
    eval_dataset = data.make_eval_dataset(tf, dataset.x_test, dataset.y_test, batch_size)
    model = create_model(tf, learning_rate)
    timer = runtime.make_epoch_timer(tf, "baseline", plan["samples_per_epoch"])
    runtime.log(f"baseline: {sizes['dataset']} {sizes['train_size']} train / {sizes['test_size']} test, "
                f"{sizes['epochs']} epochs, batch {batch_size}, {cpus} CPU(s)")
    model.fit(train_dataset, epochs=sizes["epochs"], steps_per_epoch=plan["steps_per_epoch"],
              validation_data=eval_dataset, callbacks=[timer], verbose=0)
    test_loss, test_accuracy, predictions = runtime.evaluate(model, dataset.x_test, dataset.y_test,
                                                             batch_size)
    record = results.run_record(
        training_type="baseline", sizes=sizes, per_worker_batch=batch_size, num_workers=1,
        cpus_per_worker=cpus, plan=plan, run_start=run_start,
        first_batch_time=timer.first_batch_time, epoch_times=timer.epoch_times,
        history=timer.history, test_loss=test_loss, test_accuracy=test_accuracy,
        test_predictions=predictions, learning_rate=learning_rate, seed=seed)
    record.update(epoch_cpu_seconds=timer.epoch_cpu_seconds, epoch_page_faults=timer.epoch_page_faults)
    path = os.path.join(results_dir, results.BASELINE_FILE)
    results.finish(record, run_start, path)
    runtime.log(f"baseline: test accuracy {test_accuracy:.4f}, {record['images_per_second']:.1f} img/s, "
                f"train {record['train_time_seconds']:.1f}s, total {record['total_time_seconds']:.1f}s "
                f"-> {path}")
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
        runtime.restart_with_allocator_environment("training.baseline_training")
        sizes = settings.resolve_sizes(args)
        train_baseline(sizes, args.cpus, args.learning_rate, args.seed, args.data_dir, args.results_dir)
    except ValueError as error:
        print(f"baseline_training: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
