"""Ray Train data-parallel training: the baseline's CNN on N workers with MultiWorkerMirroredStrategy.

Ray Train's TensorflowTrainer starts N worker processes (each with its CPUs reserved on one
node), writes TF_CONFIG for each and runs `train_loop_per_worker` on all of them. Inside,
TensorFlow's MultiWorkerMirroredStrategy keeps a copy of the model on every worker and
all-reduces the gradients at every step, so the copies stay identical. Each worker trains on
its own 1/N of every epoch, and the global batch is the per-worker batch times N. Diff this
file against baseline_training.py: what differs is what data parallelism adds.

Run from the repository root with a Ray cluster running (./scripts/run-benchmark.sh starts
one and runs both trainings for you; `--address local` starts a throwaway one-node cluster):
    .venv/bin/python -m lesson.ray_training --num-workers 2 --address 127.0.0.1:6380
    .venv/bin/python -m lesson.ray_training --smoke-test --address local
    .venv/bin/python -m lesson.ray_training --checkpoint   # a checkpoint every epoch; --resume goes on

Expect a longer start-up before the first batch than the baseline's (Ray starts its workers),
then more images per second than the baseline but less than N times as many, and the same
test accuracy within a point: the quick start's measured run, with its start-up, is in
docs/results/quickstart/.
"""

import argparse
import os
import sys

import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

from harness.instruments import instrument
from harness.run_state import RayRun
from lesson import data, fault_tolerance, recipe as recipes, workarounds
from lesson.model import create_model, learning_rate

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_loop_per_worker(config):
    """Runs on every Ray Train worker: train this worker's shard in lockstep with the others."""
    recipe = config["recipe"]
    tf = workarounds.import_tensorflow(recipe.cpus_per_worker)
    context = ray.train.get_context()
    tf.keras.utils.set_random_seed(recipe.seed)
    # Reads TF_CONFIG, which Ray Train wrote for this worker, and joins the other workers.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    dataset = data.load_dataset(recipe.dataset, recipe.train_size, recipe.test_size,
                                data_dir=config["data_dir"], seed=recipe.seed)
    plan = data.shard_plan(recipe.train_size, recipe.batch_size, context.get_world_size())

    def dataset_fn(input_context):
        # One input pipeline per worker: its own shard of the training set, at the per-worker batch.
        per_worker_batch = input_context.get_per_replica_batch_size(plan["global_batch_size"])
        return data.make_train_dataset(dataset.x_train, dataset.y_train, per_worker_batch,
                                       num_shards=input_context.num_input_pipelines,
                                       shard_index=input_context.input_pipeline_id, seed=recipe.seed)

    # The model must be built and compiled inside strategy.scope(): its variables become
    # mirrored variables, whose gradients are all-reduced across the workers at every step.
    with strategy.scope():
        model = create_model(learning_rate(recipe, plan))
    # What the benchmark measures and proves, attached from outside (skip it when learning).
    instruments = instrument(model, recipe, plan, config["harness"])
    # After a worker failure (or --resume) this loads the latest checkpoint first.
    checkpoints = fault_tolerance.epoch_checkpoints(strategy, model, recipe, config["checkpoints"], instruments)
    model.fit(tf.keras.utils.experimental.DatasetCreator(instruments.dataset_fn(dataset_fn)),
              epochs=recipe.epochs, steps_per_epoch=plan["steps_per_epoch"], initial_epoch=checkpoints.initial_epoch,
              validation_data=data.make_eval_dataset(dataset.x_test, dataset.y_test, plan["global_batch_size"]),
              callbacks=[*instruments.callbacks, checkpoints], verbose=0)
    # Ray Train V2 discards this function's return value: the record goes home through an actor.
    instruments.finish(model, dataset)


def train_with_ray(recipe, address, data_dir, results_dir, **checkpoint_options):
    """Train on the Ray cluster at `address`; write results_dir/ray_results_<N>workers.json."""
    plan = data.shard_plan(recipe.train_size, recipe.batch_size, recipe.num_workers)
    run = RayRun(recipe, plan, results_dir, address, **checkpoint_options)  # checks all it can before Ray
    workarounds.ray_train_tensorflow_without_tensorflow()  # the driver needs no TensorFlow
    from ray.train.tensorflow import TensorflowTrainer

    ray.init(address=None if address == "local" else address, runtime_env={
        # Ray workers get their environment from the node, not from this driver.
        **workarounds.ray_worker_settings(),
        # Ship the lesson and the harness to every node, so workers on other machines run the same code.
        "py_modules": [os.path.join(REPO_ROOT, "lesson"), os.path.join(REPO_ROOT, "harness")]})
    try:
        trainer = TensorflowTrainer(
            train_loop_per_worker,
            train_loop_config={"recipe": recipe, "data_dir": data_dir, "checkpoints": run.checkpoints,
                               "harness": run.start_workers(ray)},  # fails fast if the workers do not fit
            scaling_config=ScalingConfig(num_workers=recipe.num_workers,
                                         resources_per_worker={"CPU": recipe.cpus_per_worker}),
            run_config=RunConfig(name=run.name, failure_config=FailureConfig(max_failures=recipe.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=fault_tolerance.CHECKPOINTS_TO_KEEP),
                                 **run.ray_storage()))
        workarounds.ends_with_its_driver(trainer)  # this process ends with the run: no placement-group cleaner
        return run.fit(ray, trainer)  # run_status.json, progress, restarts, Ctrl-C; then the results JSON
    finally:
        ray.shutdown()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    recipes.add_arguments(parser)
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "auto"),
                        help="Ray cluster: host:port, 'auto' (the cluster running on this machine, "
                             "the default) or 'local' (start a throwaway one-node cluster)")
    recipes.add_run_arguments(parser)
    fault_tolerance.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        workarounds.allocator_setting()  # a bad DEMO_ALLOCATOR fails here, before any cluster work
        train_with_ray(recipes.from_args(args), args.address, args.data_dir, args.results_dir,
                       storage_path=args.storage_path, checkpoint=args.checkpoint, resume=args.resume,
                       run_name=args.run_name)
    except ValueError as error:
        print(f"ray_training: error: {error}", file=sys.stderr)
        return 2
    except ConnectionError as error:
        print(f"ray_training: error: cannot connect to a Ray cluster at '{args.address}': {error} "
              "Start one (./scripts/run-benchmark.sh does) or pass --address.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ray_training: interrupted: no results were written. With --checkpoint, continue "
              "from the last epoch with --resume (RESUME=1).", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
