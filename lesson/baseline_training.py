"""Plain Keras baseline: the CNN trained with model.fit in one process, on a fixed CPU budget.

This is the reference the Ray run is measured against. It takes the same recipe as the Ray
run (lesson/recipe.py): the CPU budget of one Ray worker (`--cpus-per-worker`, default 1:
TensorFlow's thread pools are sized to it) and the Ray run's global batch (`--batch-size`
per worker times `--num-workers`), so both runs take the same optimizer steps over the same
examples. Diff it against ray_training.py to see what data parallelism adds.

Run from the repository root (./scripts/run-benchmark.sh runs it for you, with the Ray run):
    .venv/bin/python -m lesson.baseline_training --batch-size 64 --num-workers 2 --cpus-per-worker 1
    .venv/bin/python -m lesson.baseline_training --smoke-test      # seconds, proves the path

Expect a test accuracy far above the 10% of chance, and a training time that depends on your
CPU: the quick start's measured run is in docs/results/quickstart/.
"""

import argparse
import sys
import time

from harness.instruments import instrument
from lesson import data, recipe as recipes, workarounds
from lesson.model import create_model, learning_rate


def train_baseline(recipe, data_dir, results_dir):
    """Train in this process, evaluate, and write results_dir/baseline_results.json."""
    run_start = time.time()
    tf = workarounds.import_tensorflow(recipe.cpus_per_worker)
    tf.keras.utils.set_random_seed(recipe.seed)
    dataset = data.load_dataset(recipe.dataset, recipe.train_size, recipe.test_size,
                                data_dir=data_dir, seed=recipe.seed)
    # The Ray run's global batch, in one process: the same optimizer steps over the same examples.
    plan = data.shard_plan(recipe.train_size, recipe.global_batch_size, num_workers=1)
    # One pipeline over the whole training set, at the whole batch.
    train_dataset = data.make_train_dataset(dataset.x_train, dataset.y_train, recipe.global_batch_size,
                                            num_shards=1, shard_index=0, seed=recipe.seed)
    model = create_model(learning_rate(recipe, plan))
    # What the benchmark measures, attached from outside (skip it when learning).
    instruments = instrument(model, recipe, plan, results_dir=results_dir)
    workarounds.log(f"baseline: {recipe.dataset} {recipe.train_size} train / {recipe.test_size} test, "
                    f"{recipe.epochs} epochs, batch {recipe.global_batch_size}, {recipe.cpus_per_worker} CPU(s)")
    model.fit(train_dataset, epochs=recipe.epochs, steps_per_epoch=plan["steps_per_epoch"],
              validation_data=data.make_eval_dataset(dataset.x_test, dataset.y_test, plan["global_batch_size"]),
              callbacks=instruments.callbacks, verbose=0)
    return instruments.finish(model, dataset, run_start)  # evaluates, writes the results JSON


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    recipes.add_arguments(parser)
    recipes.add_run_arguments(parser)
    args = parser.parse_args(argv)
    try:
        workarounds.restart_with_allocator_environment("lesson.baseline_training")
        train_baseline(recipes.from_args(args), args.data_dir, args.results_dir)
    except ValueError as error:
        print(f"baseline_training: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
