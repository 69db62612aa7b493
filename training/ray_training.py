"""Ray Train data-parallel run: the same CNN on N workers with MultiWorkerMirroredStrategy.

Ray Train's TensorflowTrainer starts N worker processes (one per `--num-workers`, each
with `--cpus-per-worker` CPUs), writes TF_CONFIG for each, and runs
`train_loop_per_worker` on all of them. Inside, TensorFlow's MultiWorkerMirroredStrategy
keeps one copy of the model per worker and all-reduces the gradients every step, so the
copies stay identical; each worker reads its own 1/N shard of every epoch, and the global
batch is the per-worker batch times N. Each worker reports its record (node, samples,
a checksum of its final weights) to a small Ray actor, which the driver reads: that path
works when the workers are on other machines with no shared filesystem.

Run (from the repository root, inside .venv, with a Ray cluster running):
    python -m training.ray_training --num-workers 2 --cpus-per-worker 1 --address auto
    python -m training.ray_training --smoke-test --num-workers 2
    python -m training.ray_training --checkpoint   # a checkpoint every epoch; --resume continues

Expect with 2 workers x 1 CPU on a 2-core laptop: 30-40 s before the first batch, then
1.1-1.3x the baseline's images/s (README, "Understanding the results", says why not 2x),
and the same accuracy as the baseline within a point.
"""

import os

# ray.train.tensorflow imports TensorFlow: tf-keras must be chosen before that happens.
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from training import checkpointing, data, results, runtime, settings, storage  # noqa: E402
from training.model import create_model  # noqa: E402

TRAINING_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class ClusterTooSmallError(ValueError):
    """The cluster cannot place the requested workers; Ray would wait for them forever."""


def train_loop_per_worker(config):
    """Runs on every Ray Train worker: train this worker's shard, report the record."""
    import ray.train

    tf = runtime.import_tensorflow(config["cpus_per_worker"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    world_size = context.get_world_size()
    seed = config["seed"]
    tf.keras.utils.set_random_seed(seed)
    # Reads TF_CONFIG, which Ray Train wrote for this worker, and joins the collective group.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    sizes = config["sizes"]
    dataset = data.load_dataset(sizes["dataset"], sizes["train_size"], sizes["test_size"],
                                data_dir=config["data_dir"], seed=seed)
    plan = data.shard_plan(sizes["train_size"], sizes["batch_size"], world_size)
    shards_seen = []

    def dataset_fn(input_context):
        # One input pipeline per worker: this worker's shard, at the per-worker batch size.
        shards_seen.append((input_context.input_pipeline_id, input_context.num_input_pipelines))
        per_worker_batch = input_context.get_per_replica_batch_size(plan["global_batch_size"])
        return data.make_train_dataset(tf, dataset.x_train, dataset.y_train, per_worker_batch,
                                       num_shards=input_context.num_input_pipelines,
                                       shard_index=input_context.input_pipeline_id, seed=seed)

    # The model must be built and compiled inside strategy.scope(): its variables then
    # become mirrored variables whose gradients are all-reduced at every step.
    with strategy.scope():
        model = create_model(tf, config["learning_rate"])
    train_input = tf.keras.utils.experimental.DatasetCreator(dataset_fn)
    eval_input = data.make_eval_dataset(tf, dataset.x_test, dataset.y_test, plan["global_batch_size"])
    timer = runtime.make_epoch_timer(tf, f"ray worker {rank}/{world_size}", plan["samples_per_epoch"])
    steps_run = StepCounter(tf)
    # After a restart (or --resume), continue from the latest checkpoint: see checkpointing.py.
    initial_epoch = checkpointing.begin_attempt(tf, strategy, model, config, rank, timer, steps_run)
    fault_tolerance = checkpointing.make_callback(tf, config, rank, timer, steps_run)
    fit_start = time.time()
    model.fit(train_input, epochs=sizes["epochs"], steps_per_epoch=plan["steps_per_epoch"],
              initial_epoch=initial_epoch, validation_data=eval_input,
              callbacks=[timer, steps_run, fault_tolerance], verbose=0)
    fit_seconds = time.time() - fit_start
    # Every worker must call get_weights(): reading the batch-norm statistics averages
    # them across workers with a collective, so all workers take part.
    weights = model.get_weights()
    trainable_count = len(model.trainable_weights)
    record = {
        "rank": rank,
        "world_size": world_size,
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "input_pipelines": sorted(set(shards_seen)),
        "steps_per_epoch": steps_run.steps_per_epoch,
        # Steps actually run times this worker's batch: what it really processed.
        "samples_per_epoch": [steps * sizes["batch_size"] for steps in steps_run.steps_per_epoch],
        "weights_checksum": runtime.weights_checksum(weights),
        "trainable_weights_checksum": runtime.weights_checksum(weights[:trainable_count]),
        "epoch_times_seconds": timer.epoch_times,
        "epoch_cpu_seconds": timer.epoch_cpu_seconds,
        "epoch_page_faults": timer.epoch_page_faults,
        "first_batch_time": timer.first_batch_time,
        "fit_seconds": fit_seconds,
        "history": timer.history,
    }
    # The final test: every worker evaluates its share of the test set (examples k, k+N,
    # ...) with a plain, non-distributed copy of the model (no collective, the same
    # evaluation code as the baseline); the driver puts the shares together. Rank 0 alone
    # took 12 s of the run's end on the test set of the quick start.
    local_model = create_model(tf, config["learning_rate"])
    local_model.set_weights(weights)
    share = slice(rank, None, world_size)
    loss, accuracy, predictions = runtime.evaluate(local_model, dataset.x_test[share], dataset.y_test[share],
                                                   sizes["batch_size"])
    record["test_share"] = {"count": len(predictions), "loss_sum": loss * len(predictions),
                            "correct": int(round(accuracy * len(predictions))),
                            "predictions": [int(label) for label in predictions]}
    # Under Ray Train V2 the return value is discarded and metrics reported without a
    # checkpoint never reach Result.metrics; the collector actor is how records get home.
    ray.get(config["collector"].add.remote(record))


def StepCounter(tf):
    """A callback that counts the training steps actually run in each epoch."""

    class _StepCounter(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps_per_epoch = []

        def on_epoch_begin(self, epoch, logs=None):
            self.steps_per_epoch.append(0)

        def on_train_batch_end(self, batch, logs=None):
            self.steps_per_epoch[-1] += 1

    return _StepCounter()


def make_collector_class(ray):
    @ray.remote(num_cpus=0)
    class ResultsCollector(checkpointing.AttemptTracker):
        """Holds what the workers send; lives in the cluster, read by the driver."""

        def __init__(self):
            super().__init__()  # counts worker group attempts (restarts)
            self.records = []

        def add(self, record):
            self.records.append(record)

        def get_all(self):
            return list(self.records)

    return ResultsCollector


def check_address_answers(address, timeout_seconds=5.0):
    """Fail in seconds, not minutes, when a host:port address does not answer."""
    if address in (None, "auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address '{address}' is not host:port (for example 127.0.0.1:6379), "
                         "'auto' or 'local'.")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_seconds):
            pass
    except OSError as error:
        raise ValueError(f"No Ray cluster answers at {address} ({error}). Start one "
                         "(./scripts/run-benchmark.sh starts a local cluster) or fix --address.") from None


def check_capacity(ray, num_workers, cpus_per_worker):
    """Check that N workers x C CPUs fit; Ray would otherwise wait for them forever.

    Each worker needs its C CPUs on a single node, so what counts is how many workers
    fit on each node, not the cluster's total. Returns a description of the cluster.
    """
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    node_cpus = [(node["NodeID"], node["NodeManagerAddress"], node["Resources"].get("CPU", 0.0))
                 for node in nodes]
    total_cpus = sum(cpus for _, _, cpus in node_cpus)
    slots = sum(int(cpus // cpus_per_worker) for _, _, cpus in node_cpus)
    layout = ", ".join(f"{node_id[:8]} {cpus:g}" for node_id, _, cpus in node_cpus)
    asked = f"{num_workers} workers x {cpus_per_worker} CPU(s)"
    if slots < num_workers:
        raise ClusterTooSmallError(
            f"The cluster cannot place {asked}: it has {len(nodes)} alive node(s) with "
            f"{total_cpus:g} CPUs in all (CPUs per node: {layout}), and a worker's CPUs must be "
            f"on one node, so at most {slots} such workers fit. Lower --num-workers (NUM_WORKERS) "
            "or --cpus-per-worker (CPUS_PER_WORKER), or add nodes.")
    available = ray.available_resources().get("CPU", 0.0)
    if available < num_workers * cpus_per_worker:
        raise ClusterTooSmallError(
            f"The cluster has room for {asked} in principle, but only {available:g} of its "
            f"{total_cpus:g} CPUs are free now: another job is using them. Wait for it, or stop it "
            "(ray list actors / the dashboard show what runs).")
    return {"nodes": [{"node_id": node_id, "address": address, "cpus": cpus}
                      for node_id, address, cpus in node_cpus],
            "total_cpus": total_cpus}


def run_ray_training(sizes, num_workers, cpus_per_worker, learning_rate, seed, data_dir,
                     results_dir, address="auto", storage_path=None, checkpoint=False,
                     max_failures=checkpointing.DEFAULT_MAX_FAILURES, resume=False, run_name=None):
    """Train on the Ray cluster at `address` and write results_dir/ray_results_<N>workers.json."""
    run_start = time.time()
    runtime.check_results_dir_writable(results_dir)
    allocator = runtime.allocator_setting()  # fail early, before any cluster work
    data.shard_plan(sizes["train_size"], sizes["batch_size"], num_workers)  # fail early
    check_address_answers(address)
    checkpoint = checkpoint or resume
    storage_path = checkpointing.storage_root(storage_path, checkpoint)
    storage.prepare(storage_path)
    run_settings = dict(sizes, num_workers=num_workers, seed=seed, learning_rate=learning_rate)
    run_name, run_dir, resume = checkpointing.plan_run(storage_path, run_name, resume, run_settings)
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    runtime_env = {
        # Ray workers get their environment from the node, not from this driver: pass on
        # the allocator setting (runtime.tune_memory_allocation) so both runs share it.
        "env_vars": {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                     runtime.ALLOCATOR_VARIABLE: allocator,
                     # A Ray worker has its threads and malloc arenas before the training
                     # function runs: apply the setting from the process start.
                     **runtime.allocator_environment(allocator)},
        # Ship this package to every node, so workers on other machines import the same code.
        "py_modules": [TRAINING_PACKAGE_DIR],
    }
    if address == "local":
        ray.init(runtime_env=runtime_env, include_dashboard=False)
    else:
        ray.init(address=address, runtime_env=runtime_env)
    try:
        cluster = check_capacity(ray, num_workers, cpus_per_worker)
        # On the head node: a worker node may be killed (scripts/chaos.sh), the head may not.
        collector = make_collector_class(ray).options(
            resources={"node:__internal_head__": 0.001}).remote()
        config = dict(sizes=sizes, cpus_per_worker=cpus_per_worker, learning_rate=learning_rate,
                      seed=seed, data_dir=data_dir, collector=collector,
                      fault_tolerance={"checkpoint": checkpoint, "run_token": f"{run_name}-{run_start}"})
        run_config = RunConfig(name=run_name, **storage.ray_storage(storage_path),
                               failure_config=FailureConfig(max_failures=max_failures),
                               checkpoint_config=CheckpointConfig(num_to_keep=checkpointing.CHECKPOINTS_TO_KEEP))
        trainer = TensorflowTrainer(
            train_loop_per_worker=train_loop_per_worker, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=False,
                                         resources_per_worker={"CPU": cpus_per_worker}),
            run_config=run_config)
        runtime.log(f"ray: {num_workers} workers x {cpus_per_worker} CPU(s) on {len(cluster['nodes'])} "
                    f"nodes; {sizes['dataset']} {sizes['train_size']} train / {sizes['test_size']} test, "
                    f"{sizes['epochs']} epochs, batch {sizes['batch_size']} per worker "
                    f"({sizes['batch_size'] * num_workers} global)")
        runtime.log(f"ray: run '{run_name}' in {run_dir}; checkpoints every epoch: "
                    f"{'yes' if checkpoint else 'no (--checkpoint, CHECKPOINT=1)'}; up to {max_failures} "
                    f"restarts{'; resuming' if resume else ''}")
        with checkpointing.StatusGuard(run_dir, settings=run_settings, checkpoint=checkpoint) as status:
            trainer_start = time.time()
            with checkpointing.ProgressMonitor(ray, collector, run_dir), noting_sigint() as interrupted:
                trainer.fit()
            if interrupted.is_set():
                # Ray Train's Ctrl-C handler asks the controller to abort; an abort sent
                # while the controller is still starting is lost and the run completes.
                # A run the user interrupted must still end as interrupted, without results.
                raise KeyboardInterrupt
            worker_records = ray.get(collector.get_all.remote())
            fault_facts = checkpointing.summarize_attempts(
                ray.get(collector.get_attempts.remote()),
                checkpointing.read_json(storage.join(run_dir, checkpointing.FAILURE_FILE)))
            fault_facts.update(run_name=run_name, run_dir=run_dir, checkpointing=checkpoint,
                               max_failures=max_failures)
            record = _write_ray_results(sizes, num_workers, cpus_per_worker, learning_rate, seed,
                                        results_dir, run_start, trainer_start, cluster, worker_records,
                                        extra=fault_facts)
            status.completed_facts["results"] = os.path.join(results_dir, results.ray_file(num_workers))
    finally:
        ray.shutdown()
    return record


@contextlib.contextmanager
def noting_sigint():
    """Yield an Event that is set when SIGINT arrives, whoever handles it.

    Ray Train V2 installs its own SIGINT handler inside `fit()`; signal.signal is wrapped
    for the duration so that the handler it installs also sets the event first.
    """
    interrupted = threading.Event()
    original = signal.signal

    def note_then(handler):
        def noting(signum, frame):
            interrupted.set()
            return handler(signum, frame)
        return noting

    def wrapping(signum, handler):
        if signum == signal.SIGINT and callable(handler):
            return original(signum, note_then(handler))
        return original(signum, handler)

    previous = signal.getsignal(signal.SIGINT)
    if callable(previous):  # an ignored SIGINT (a background job) stays ignored
        original(signal.SIGINT, note_then(previous))
    signal.signal = wrapping
    try:
        yield interrupted
    finally:
        signal.signal = original
        if previous is not None:
            original(signal.SIGINT, previous)


def merge_test_shares(workers, test_size):
    """Test loss, accuracy and predictions of the whole test set from the workers' shares.

    Worker k of N evaluated examples k, k+N, ...; its predictions go back to those places.
    """
    world_size = len(workers)
    predictions = [None] * test_size
    counted = sum(worker["test_share"]["count"] for worker in workers)
    shares_fit = all(len(range(worker["rank"], test_size, world_size)) == len(worker["test_share"]["predictions"])
                     for worker in workers)
    if shares_fit:
        for worker in workers:
            predictions[worker["rank"]::world_size] = worker["test_share"]["predictions"]
    if not shares_fit or counted != test_size or any(label is None for label in predictions):
        raise RuntimeError(f"The workers evaluated {counted} test examples, not {test_size}.")
    loss = sum(worker["test_share"]["loss_sum"] for worker in workers) / test_size
    accuracy = sum(worker["test_share"]["correct"] for worker in workers) / test_size
    return loss, accuracy, predictions


def _write_ray_results(sizes, num_workers, cpus_per_worker, learning_rate, seed, results_dir,
                       run_start, trainer_start, cluster, worker_records, extra=None):
    latest = {}
    for record in worker_records:
        latest[record["rank"]] = record  # a restarted worker group reports again: keep the last
    workers = [latest[rank] for rank in sorted(latest)]
    if len(workers) != num_workers or 0 not in latest:
        raise RuntimeError(f"Expected records from {num_workers} workers, got ranks {sorted(latest)}.")
    chief = latest[0]
    test_loss, test_accuracy, test_predictions = merge_test_shares(workers, sizes["test_size"])
    plan = data.shard_plan(sizes["train_size"], sizes["batch_size"], num_workers)
    # Workers move in lockstep (every step waits for the all-reduce): an epoch takes as
    # long as its slowest worker.
    epoch_times = [max(times) for times in zip(*(worker["epoch_times_seconds"] for worker in workers))]
    first_batch_time = min(worker["first_batch_time"] for worker in workers)
    record = results.run_record(
        training_type="ray_train", sizes=sizes, per_worker_batch=sizes["batch_size"],
        num_workers=num_workers, cpus_per_worker=cpus_per_worker, plan=plan, run_start=run_start,
        first_batch_time=first_batch_time, epoch_times=epoch_times, history=chief["history"],
        test_loss=test_loss, test_accuracy=test_accuracy,
        test_predictions=test_predictions, learning_rate=learning_rate, seed=seed)
    checksums = {worker["weights_checksum"] for worker in workers}
    record.update(
        trainer_start_to_first_batch_seconds=first_batch_time - trainer_start,
        weights_identical=len(checksums) == 1,
        cluster=cluster,
        workers=[{key: worker[key] for key in (
            "rank", "node_id", "hostname", "pid", "input_pipelines", "steps_per_epoch",
            "samples_per_epoch", "weights_checksum", "trainable_weights_checksum",
            "epoch_times_seconds", "epoch_cpu_seconds", "epoch_page_faults", "fit_seconds")}
            | {"test_examples": worker["test_share"]["count"]}
            for worker in workers],
    )
    record.update(extra or {})  # restarts, attempts, checkpoints: see checkpointing.py
    path = os.path.join(results_dir, results.ray_file(num_workers))
    results.finish(record, run_start, path)
    nodes = len({worker["node_id"] for worker in workers})
    runtime.log(f"ray: test accuracy {record['test_accuracy']:.4f}, {record['images_per_second']:.1f} img/s, "
                f"train {record['train_time_seconds']:.1f}s, total {record['total_time_seconds']:.1f}s; "
                f"{num_workers} workers on {nodes} node(s), weights identical: "
                f"{record['weights_identical']} -> {path}")
    if not record["weights_identical"]:
        raise RuntimeError("The workers finished with different weights: gradients were not "
                           f"synchronised. Checksums: {sorted(checksums)}")
    return record


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
    parser.add_argument("--storage-path", default=None,
                        help="where Ray Train keeps run state and checkpoints; every node must reach it: "
                             "a folder, or s3://bucket/prefix with AWS_ENDPOINT_URL and the AWS keys set "
                             "(default: checkpoints/ in the repository with --checkpoint, else ~/ray_results)")
    parser.add_argument("--checkpoint", action="store_true",
                        help="save a checkpoint every epoch; a restarted worker group resumes from it")
    parser.add_argument("--max-failures", type=settings.non_negative_int,
                        default=checkpointing.DEFAULT_MAX_FAILURES,
                        help=f"worker group restarts Ray Train may make (default {checkpointing.DEFAULT_MAX_FAILURES})")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run (--run-name, or the latest unfinished one in "
                             "--storage-path) from its latest checkpoint; implies --checkpoint")
    parser.add_argument("--run-name", default=None,
                        help="Ray Train run name, the folder under --storage-path (default: generated)")
    args = parser.parse_args(argv)
    try:
        sizes = settings.resolve_sizes(args)
        run_ray_training(sizes, args.num_workers, args.cpus_per_worker, args.learning_rate, args.seed,
                         args.data_dir, args.results_dir, address=args.address,
                         storage_path=args.storage_path, checkpoint=args.checkpoint,
                         max_failures=args.max_failures, resume=args.resume, run_name=args.run_name)
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
