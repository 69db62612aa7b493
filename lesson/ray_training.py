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

Expect about half a minute from the trainer's start to the first batch, then more images
per second than the baseline but less than N times as many, and the same test accuracy
within a point: the quick start's measured run is in docs/results/quickstart/.
"""

import argparse
import os
import sys

import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

from harness import cluster_checks, records, step_timing
from lesson import data, fault_tolerance, recipe as settings, workarounds
from harness.collector import send_record, start_collector
from lesson.model import create_model, learning_rate
from harness.run_state import RayRun

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_loop_per_worker(config):
    """Runs on every Ray Train worker: train this worker's shard in lockstep with the others."""
    run_settings, seed = config["settings"], config["settings"]["seed"]
    tf = workarounds.import_tensorflow(run_settings["cpus_per_worker"])
    context = ray.train.get_context()
    tf.keras.utils.set_random_seed(seed)
    # Reads TF_CONFIG, which Ray Train wrote for this worker, and joins the other workers.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    dataset = data.load_dataset(run_settings["dataset"], run_settings["train_size"], run_settings["test_size"],
                                data_dir=config["data_dir"], seed=seed)
    plan = data.shard_plan(run_settings["train_size"], run_settings["batch_size"], context.get_world_size())
    label = f"ray worker {context.get_world_rank()}/{context.get_world_size()}"
    recorder = records.epoch_recorder(tf, label, plan["samples_per_epoch"], context.get_world_size())

    def dataset_fn(input_context):
        # One input pipeline per worker: its own shard of the training set, at the per-worker batch.
        recorder.note_shard(input_context)
        per_worker_batch = input_context.get_per_replica_batch_size(plan["global_batch_size"])
        return data.make_train_dataset(tf, dataset.x_train, dataset.y_train, per_worker_batch,
                                       num_shards=input_context.num_input_pipelines,
                                       shard_index=input_context.input_pipeline_id, seed=seed)

    # The model must be built and compiled inside strategy.scope(): its variables become
    # mirrored variables, whose gradients are all-reduced across the workers at every step.
    with strategy.scope():
        model = create_model(tf, learning_rate(tf, run_settings, plan), run_settings["allreduce_dtype"])
    # After a worker failure (or --resume) this loads the latest checkpoint first.
    checkpoints = fault_tolerance.epoch_checkpoints(tf, strategy, model, recorder, config)
    model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=run_settings["epochs"],
              steps_per_epoch=plan["steps_per_epoch"], initial_epoch=checkpoints.initial_epoch,
              validation_data=data.make_eval_dataset(tf, dataset.x_test, dataset.y_test, plan["global_batch_size"]),
              callbacks=[recorder, checkpoints], verbose=0)
    # Ray Train V2 discards this function's return value: the record goes home through an actor.
    send_record(config["collector"], recorder, model, dataset, run_settings)


def train_with_ray(run_settings, address, data_dir, results_dir, **fault_tolerance_options):
    """Train on the Ray cluster at `address`; write results_dir/ray_results_<N>workers.json."""
    num_workers, cpus_per_worker = run_settings["num_workers"], run_settings["cpus_per_worker"]
    plan = data.shard_plan(run_settings["train_size"], run_settings["batch_size"], num_workers)
    run = RayRun(run_settings, plan, results_dir, **fault_tolerance_options)  # checks all it can before Ray
    cluster_checks.check_address_answers(address)
    workarounds.import_tensorflow(cpus=1)  # Ray's TensorFlow module imports TensorFlow: do it our way first
    from ray.train.tensorflow import TensorflowTrainer

    ray.init(address=None if address == "local" else address, runtime_env={
        # Ray workers get their environment from the node, not from this driver.
        **workarounds.ray_worker_settings(),
        # Ship the lesson and the harness to every node, so workers on other machines run the same code.
        "py_modules": [os.path.join(REPO_ROOT, "lesson"), os.path.join(REPO_ROOT, "harness")]})
    try:
        cluster = cluster_checks.check_capacity(ray, num_workers, cpus_per_worker)  # else Ray waits forever
        collector = start_collector(ray)
        trainer = TensorflowTrainer(
            train_loop_per_worker,
            train_loop_config={"settings": run_settings, "data_dir": data_dir, "collector": collector,
                               "fault_tolerance": run.worker_settings()},
            scaling_config=ScalingConfig(num_workers=num_workers, resources_per_worker={"CPU": cpus_per_worker}),
            run_config=RunConfig(name=run.name, failure_config=FailureConfig(max_failures=run.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=fault_tolerance.CHECKPOINTS_TO_KEEP),
                                 **run.ray_storage()))
        run.describe(cluster)
        with run.tracking(ray, collector):  # run_status.json, progress.json, restarts, Ctrl-C
            trainer.fit()
        return run.results(ray, collector, cluster)  # the workers' records -> the results JSON
    finally:
        ray.shutdown()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    settings.add_recipe_arguments(parser)
    parser.add_argument("--num-workers", type=settings.positive_int, default=settings.DEFAULT_NUM_WORKERS,
                        help=f"Ray Train workers (default {settings.DEFAULT_NUM_WORKERS})")
    parser.add_argument("--cpus-per-worker", type=settings.positive_int, default=settings.DEFAULT_CPUS,
                        help=f"CPUs (and TensorFlow threads) per worker (default {settings.DEFAULT_CPUS})")
    parser.add_argument("--batch-size", type=settings.positive_int, default=None,
                        help=f"examples per step on each worker (default {settings.DEFAULT_BATCH_SIZE}); "
                             "the global batch is this times --num-workers")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "auto"),
                        help="Ray cluster: host:port, 'auto' (the cluster running on this machine, "
                             "the default) or 'local' (start a throwaway one-node cluster)")
    parser.add_argument("--allreduce-dtype", choices=step_timing.ALLREDUCE_DTYPES, default="float32",
                        help="the gradients' type in the all-reduce: float32, or bfloat16/float16 to halve "
                             "the bytes (default float32; docs/PERFORMANCE.md)")
    settings.add_fault_tolerance_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_settings = dict(settings.resolve_sizes(args), num_workers=args.num_workers,
                            cpus_per_worker=args.cpus_per_worker, learning_rate=args.learning_rate, seed=args.seed,
                            lr_scaling=args.lr_scaling,
                            allreduce_dtype=args.allreduce_dtype)
        workarounds.allocator_setting()  # a bad DEMO_ALLOCATOR fails here, before any cluster work
        train_with_ray(run_settings, args.address, args.data_dir, args.results_dir,
                       storage_path=args.storage_path, checkpoint=args.checkpoint, resume=args.resume,
                       run_name=args.run_name, max_failures=args.max_failures)
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
