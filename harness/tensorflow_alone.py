"""TensorFlow alone: the Ray run's training as N plain processes, with no Ray. A control.

It answers what Ray costs, and what it buys, on top of TensorFlow: the same model, data,
per-worker batch, timed step, allocator and pinning as lesson/ray_training.py, and the same
MultiWorkerMirroredStrategy, but the N processes are started here and each is handed the
TF_CONFIG that Ray Train would write for it (the cluster's addresses and its own index).
Ray's own release tests make the same comparison (the TensorFlow workload of ray-project/ray's
AIR benchmarks). What Ray adds on top (placing workers on nodes, restarting them, one command
for N machines) is not here: a process that dies ends this run.

Run from the repository root (./scripts/run-benchmark.sh runs it beside the other two
unless TENSORFLOW_ALONE=0); it writes tensorflow_alone_results_<N>workers.json, which
analysis/compare.py puts in the comparison:
    .venv/bin/python -m harness.tensorflow_alone --num-workers 2 --results-dir results/x
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from harness import results
from lesson import data, recipe as recipes, workarounds
from lesson.model import create_model, learning_rate

RESULTS_PREFIX = "tensorflow_alone_results"


def results_file(num_workers):
    return f"{RESULTS_PREFIX}_{num_workers}workers.json"


class Context:
    """What the harness asks a Ray Train worker's context, answered from TF_CONFIG."""

    def __init__(self, rank, world_size):
        self.rank, self.world_size = rank, world_size

    def get_world_rank(self):
        return self.rank

    def get_world_size(self):
        return self.world_size


def train_worker(recipe, data_dir, record_path):
    """One process of the N: what train_loop_per_worker does, with TF_CONFIG written by hand."""
    from harness.instruments import instrument

    tf = workarounds.import_tensorflow(recipe.cpus_per_worker)
    task = json.loads(os.environ["TF_CONFIG"])
    context = Context(task["task"]["index"], len(task["cluster"]["worker"]))
    tf.keras.utils.set_random_seed(recipe.seed)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG, joins the others
    dataset = data.load_dataset(recipe.dataset, recipe.train_size, recipe.test_size, data_dir=data_dir,
                                seed=recipe.seed)
    plan = data.shard_plan(recipe.train_size, recipe.batch_size, context.get_world_size())

    def dataset_fn(input_context):
        per_worker_batch = input_context.get_per_replica_batch_size(plan["global_batch_size"])
        return data.make_train_dataset(dataset.x_train, dataset.y_train, per_worker_batch,
                                       num_shards=input_context.num_input_pipelines,
                                       shard_index=input_context.input_pipeline_id, seed=recipe.seed)

    with strategy.scope():
        model = create_model(learning_rate(recipe, plan))
    instruments = instrument(model, recipe, plan, {"record_path": record_path, "checkpoint": False},
                             context=context)
    model.fit(tf.keras.utils.experimental.DatasetCreator(instruments.dataset_fn(dataset_fn)),
              epochs=recipe.epochs, steps_per_epoch=plan["steps_per_epoch"],
              validation_data=data.make_eval_dataset(dataset.x_test, dataset.y_test, plan["global_batch_size"]),
              callbacks=instruments.callbacks, verbose=0)
    instruments.finish(model, dataset)


def free_ports(count):
    """`count` ports on loopback that nothing listens on now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for each in sockets:
            each.bind(("127.0.0.1", 0))
        return [each.getsockname()[1] for each in sockets]
    finally:
        for each in sockets:
            each.close()


def cores_of(rank, recipe, pin):
    """The cores worker `rank` is pinned to: its own CPUS_PER_WORKER cores, as the local
    cluster pins worker node rank+1; None when not pinning or the machine is too small."""
    enough = (os.cpu_count() or 1) >= recipe.num_workers * recipe.cpus_per_worker
    if pin == "0" or (pin == "auto" and not enough) or not hasattr(os, "sched_setaffinity"):
        return None
    first = (rank * recipe.cpus_per_worker) % (os.cpu_count() or 1)
    return set(range(first, first + recipe.cpus_per_worker))


def wait_all(processes):
    """The exit codes of all processes; once one fails, the others (waiting in a collective
    for it, forever) are stopped."""
    while any(process.poll() is None for process in processes):
        if any(process.returncode not in (None, 0) for process in processes):
            for process in processes:
                if process.poll() is None:
                    process.terminate()
        time.sleep(0.2)
    return [process.returncode for process in processes]


def train_tensorflow_alone(recipe, data_dir, results_dir, pin="auto"):
    """Start the N processes, wait for all, and write results_dir/tensorflow_alone_results_<N>workers.json."""
    run_start = time.time()
    results.check_writable(results_dir)
    plan = data.shard_plan(recipe.train_size, recipe.batch_size, recipe.num_workers)
    addresses = [f"127.0.0.1:{port}" for port in free_ports(recipe.num_workers)]
    workarounds.log(f"tensorflow alone: {recipe.num_workers} processes x {recipe.cpus_per_worker} CPU(s), "
                    f"TF_CONFIG by hand, no Ray; batch {recipe.batch_size} per worker")
    with tempfile.TemporaryDirectory(prefix="tensorflow-alone-") as folder:
        processes = []
        for rank in range(recipe.num_workers):
            tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": rank}}
            env = {**os.environ, **workarounds.allocator_environment(workarounds.allocator_setting()),
                   "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
            cores = cores_of(rank, recipe, pin)
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "harness.tensorflow_alone", *recipe.flags(),
                 *(["--data-dir", data_dir] if data_dir else []),
                 "--worker-record", os.path.join(folder, f"worker-{rank}.json")],
                env=env, cwd=results.REPO_ROOT, preexec_fn=(lambda cores=cores: os.sched_setaffinity(0, cores))
                if cores else None))
        try:
            codes = wait_all(processes)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        failed = [rank for rank, code in enumerate(codes) if code != 0]
        if failed:
            raise RuntimeError(f"TensorFlow-alone worker(s) {failed} exited with {[codes[r] for r in failed]} "
                               "(see their output above); a worker that stops stops them all, since nothing "
                               "restarts it without Ray.")
        records = []
        for rank in range(recipe.num_workers):
            with open(os.path.join(folder, f"worker-{rank}.json"), encoding="utf-8") as source:
                records.append(json.load(source))
    settings = results.record_settings(recipe)
    record = results.ray_record(settings, plan, run_start, run_start, None, records)
    # ray_record's name for it; here it runs from the launcher's start, with no trainer.
    record["launch_to_first_batch_seconds"] = record.pop("trainer_start_to_first_batch_seconds")
    record.update(training_type="tensorflow_alone", cluster=None)
    path = os.path.join(results_dir, results_file(recipe.num_workers))
    results.write(record, run_start, path)
    workarounds.log(f"tensorflow alone: {results.summary_line(record)}; weights identical: "
                    f"{record['weights_identical']} -> {path}")
    if not record["weights_identical"]:
        raise RuntimeError("The TensorFlow-alone workers finished with different weights.")
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    recipes.add_arguments(parser)
    recipes.add_run_arguments(parser)
    parser.add_argument("--pin-cpus", choices=("auto", "0", "1"), default=os.environ.get("PIN_CPUS", "auto"),
                        help="pin each process to its own cores (auto: when the machine has enough)")
    parser.add_argument("--worker-record", help=argparse.SUPPRESS)  # set for the N processes only
    args = parser.parse_args(argv)
    try:
        recipe = recipes.from_args(args)
        if args.worker_record:
            train_worker(recipe, args.data_dir, args.worker_record)
        else:
            workarounds.allocator_setting()  # a bad DEMO_ALLOCATOR fails here, before any process starts
            train_tensorflow_alone(recipe, args.data_dir, args.results_dir, args.pin_cpus)
    except (ValueError, RuntimeError) as error:
        print(f"tensorflow_alone: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tensorflow_alone: interrupted: its processes were stopped and no results were written.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
