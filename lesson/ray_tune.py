"""Ray Tune: a search over the learning rate and the batch of the same CNN, and the two ways
Ray can spend N cores on it.

A hyperparameter search trains the CNN once per configuration (a trial). Trials are
independent: nothing is all-reduced between them. So the N cores can go to:
- data-parallel      one trial at a time, each a Ray Train run on N workers (ray_training.py's
                     way: each trial ends sooner, with an all-reduce at every step);
- trainer-per-trial  N trials at a time, each a Ray Train run on one worker;
- plain              N trials at a time, each plain Keras in a Tune function on one CPU: no Ray
                     Train, so no trainer start-up per trial;
- plain-asha         the same, with ASHA stopping the trials that trail after an epoch.
Every way trains the same configurations (a grid), with the same recipe and data. The
searched batch is the global one, so a trial takes the same optimizer steps on 1 or N workers.

Run from the repository root with a Ray cluster running (./scripts/run-tune.sh starts one,
runs every way, writes TUNE.md and stops the cluster; `--address local` starts a throwaway
one-node cluster):
    .venv/bin/python -m lesson.ray_tune --address 127.0.0.1:6380 --ways plain,plain-asha
    .venv/bin/python -m lesson.ray_tune --smoke-test --address local

Expect the plain ways to finish the whole grid first, and every way to find about the same
best configuration: the measured reference run is in docs/results/tune/.
"""

import argparse
import contextlib
import os
import sys

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from harness.tune_record import SearchRecord
from lesson import data, recipe as recipes, workarounds
from lesson.model import create_model

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAYS = ("data-parallel", "trainer-per-trial", "plain", "plain-asha")
# The grid every way searches (the ways' trials are the same); --learning-rates and --global-batches change it.
LEARNING_RATES = "5e-4,2e-3"
GLOBAL_BATCHES = "64,128"


def check_configuration(config, recipe, workers):
    """A configuration the recipe cannot train fails at once, before TensorFlow or any worker starts."""
    batch = config["global_batch_size"]
    if batch > recipe.train_size:
        raise ValueError(f"global batch {batch} is larger than the {recipe.train_size} training images")
    if batch % workers:  # a worker count of 1 divides every batch
        raise ValueError(f"global batch {batch} does not split evenly between {workers} workers")


def fit(config, recipe, data_dir, report, strategy=None):
    """Train one configuration and report the test accuracy after every epoch."""
    tf = workarounds.import_tensorflow(recipe.cpus_per_worker)
    tf.keras.utils.set_random_seed(recipe.seed)
    workers = strategy.num_replicas_in_sync if strategy else 1
    # Each worker trains its shard at its part of the global batch.
    plan = data.shard_plan(recipe.train_size, config["global_batch_size"] // workers, workers)
    dataset = data.load_dataset(recipe.dataset, recipe.train_size, recipe.test_size, data_dir=data_dir,
                                seed=recipe.seed)

    def shard(index):  # this worker's shard, at its part of the global batch
        return data.make_train_dataset(dataset.x_train, dataset.y_train, plan["global_batch_size"] // workers,
                                       num_shards=workers, shard_index=index, seed=recipe.seed)

    # Under the strategy, build the model inside its scope and give fit() one pipeline per worker.
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = create_model(config["learning_rate"])
    train = tf.keras.utils.experimental.DatasetCreator(lambda context: shard(context.input_pipeline_id)) \
        if strategy else shard(0)

    class ReportEpoch(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            report({"epoch": epoch + 1, "val_accuracy": float(logs["val_accuracy"]),
                    "val_loss": float(logs["val_loss"])})

    model.fit(train, epochs=recipe.epochs, steps_per_epoch=plan["steps_per_epoch"], verbose=0,
              validation_data=data.make_eval_dataset(dataset.x_test, dataset.y_test, plan["global_batch_size"]),
              callbacks=[ReportEpoch()])


def plain_trial(config, recipe, data_dir):
    """A trial of the plain ways: plain Keras in the trial's own process, on its one CPU."""
    check_configuration(config, recipe, workers=1)
    fit(config, recipe, data_dir, report=tune.report)


def train_loop_per_worker(config):
    """Runs on every Ray Train worker of a trial: the strategy joins the trial's workers."""
    tf = workarounds.import_tensorflow(config["recipe"].cpus_per_worker)
    fit(config, config["recipe"], config["data_dir"], report=ray.train.report,
        strategy=tf.distribute.MultiWorkerMirroredStrategy())


def trainer_trial(config, recipe, data_dir, workers, storage_path):
    """A trial of the Ray Train ways: a TensorflowTrainer of `workers` workers, whose
    per-epoch reports reach Tune through TuneReportCallback."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    check_configuration(config, recipe, workers)
    trainer = TensorflowTrainer(
        train_loop_per_worker, train_loop_config={**config, "recipe": recipe, "data_dir": data_dir},
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": recipe.cpus_per_worker}),
        run_config=RunConfig(name=f"train-{tune.get_context().get_trial_id()}", storage_path=storage_path,
                             callbacks=[TuneReportCallback()]))
    trainer.fit()


def search(way, recipe, space, data_dir, storage_path, callbacks=()):
    """Run every configuration of `space` the way `way` says; returns Tune's ResultGrid."""
    # A Ray Train trial's own process only waits for its workers: no CPU, on the head node (Ray
    # Train places its own actors there the same way), away from the workers, as Ray's guide advises.
    on_head = {"CPU": 0, "node:__internal_head__": 0.001}
    if way == "data-parallel":
        function, options, at_once, resources = trainer_trial, {"workers": recipe.num_workers}, 1, on_head
    elif way == "trainer-per-trial":
        function, options, at_once, resources = trainer_trial, {"workers": 1}, recipe.num_workers, on_head
    else:
        function, options, at_once, resources = plain_trial, {}, recipe.num_workers, {"CPU": recipe.cpus_per_worker}
    if function is trainer_trial:
        options["storage_path"] = storage_path  # Ray Train's run state goes beside Tune's
    trainable = tune.with_resources(tune.with_parameters(function, recipe=recipe, data_dir=data_dir, **options),
                                    resources)
    # ASHA stops, after each epoch, the trials in the lower half of those that reached it.
    scheduler = ASHAScheduler(max_t=recipe.epochs, grace_period=1, reduction_factor=2) if way.endswith("asha") else None
    tuner = tune.Tuner(trainable, param_space=space, tune_config=tune.TuneConfig(
        metric="val_accuracy", mode="max", scheduler=scheduler, max_concurrent_trials=at_once),
        run_config=tune.RunConfig(name=f"tune-{way}", storage_path=storage_path, callbacks=list(callbacks),
                                  verbose=0))
    return tuner.fit()


def search_space(learning_rates, global_batches):
    """The grid: every learning rate with every global batch."""
    return {"learning_rate": tune.grid_search(list(learning_rates)),
            "global_batch_size": tune.grid_search(list(global_batches))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    recipes.add_arguments(parser)
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "auto"),
                        help="Ray cluster: host:port, 'auto' (the default) or 'local' (a throwaway one)")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"which ways, in order (default {','.join(WAYS)})")
    parser.add_argument("--learning-rates", default=LEARNING_RATES, help=f"the grid's rates (default {LEARNING_RATES})")
    parser.add_argument("--global-batches", default=GLOBAL_BATCHES,
                        help=f"the grid's global batches (default {GLOBAL_BATCHES})")
    recipes.add_run_arguments(parser)
    args = parser.parse_args(argv)
    try:
        recipe = recipes.from_args(args)
        record = SearchRecord(args.results_dir, recipe, args.ways, args.learning_rates, args.global_batches, WAYS,
                              args.address)  # checks every setting before Ray starts
        ray.init(address=None if args.address == "local" else args.address, runtime_env={
            **workarounds.ray_worker_settings(),
            "py_modules": [os.path.join(REPO_ROOT, "lesson"), os.path.join(REPO_ROOT, "harness")]})
        workarounds.ray_train_tensorflow_without_tensorflow()  # the trial processes need no TensorFlow
        record.require_cpus(ray)  # a search that cannot fit fails here, in words
        # Ctrl-C ends the whole search at once (Tune's own handler would end the current way only,
        # and the next would start); no progress tables: the record prints a line per trial.
        os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        space = search_space(record.learning_rates, record.global_batches)
        for way in record.ways:
            with record.way(way) as callbacks:  # times the way, logs every trial's epochs
                search(way, recipe, space, args.data_dir, record.storage_path, callbacks)
    except ValueError as error:
        print(f"ray_tune: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ray_tune: interrupted: tune_results.json says how far the search got.", file=sys.stderr)
        return 130
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
