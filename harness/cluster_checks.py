"""Fail fast, not forever: checks the driver makes before it starts the trainer.

Ray queues a request for resources the cluster does not have and waits for them without
end, and a driver pointed at an address where nothing answers retries for a minute. Both
are refused here in seconds, with what to change.
"""

import os
import socket
import sys

# What a training process holds besides the data (TensorFlow, the model, Ray's worker): the
# peaks of docs/results/pod_memory/ (about 1.5 GiB a worker), rounded up.
PROCESS_BASE_BYTES = 2 * 2**30
# Each example is a float32 32x32x3 image (12,288 bytes), held about three times: the arrays,
# the worker's shard and tf.data's copy.
BYTES_PER_EXAMPLE = 3 * 32 * 32 * 3 * 4


class ClusterTooSmallError(ValueError):
    """The cluster cannot place the requested workers; Ray would wait for them forever."""


def check_address_answers(address, timeout_seconds=5.0):
    """Fail in seconds, not minutes, when a host:port address does not answer."""
    if address in (None, "auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address '{address}' is not host:port (for example 127.0.0.1:6380), "
                         "'auto' or 'local'.")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_seconds):
            pass
    except OSError as error:
        raise ValueError(f"No Ray cluster answers at {address} ({error}). Start one "
                         "(./scripts/run-benchmark.sh starts a local cluster) or fix --address "
                         "(RAY_ADDRESS).") from None


def check_capacity(ray, num_workers, cpus_per_worker):
    """Check that N workers x C CPUs fit the connected cluster; return its nodes and CPUs.

    Each worker needs its C CPUs on a single node, so what counts is how many workers fit
    on each node, not the cluster's total.
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


def check_fits_memory(recipe, total_bytes=None):
    """Refuse a recipe whose data cannot fit this machine's memory: the Ray workers train at
    the same time, each holding the whole dataset (it shards after loading)."""
    if total_bytes is None:
        total_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    examples = recipe.train_size + recipe.test_size
    needed = recipe.num_workers * (PROCESS_BASE_BYTES + examples * BYTES_PER_EXAMPLE)
    if needed > total_bytes:
        raise ValueError(
            f"TRAIN_SIZE={recipe.train_size} and TEST_SIZE={recipe.test_size} need about {needed / 2**30:.0f} GiB "
            f"for {recipe.num_workers} worker(s) training at once (each holds the whole dataset), more than this "
            f"machine's {total_bytes / 2**30:.0f} GiB. Lower TRAIN_SIZE or TEST_SIZE (or NUM_WORKERS).")


def main(argv=None):
    """`python -m harness.cluster_checks fits-machine [--smoke-test|--full]`: check the recipe
    of the environment (EPOCHS=..., as the scripts pass it) against this machine's memory."""
    import argparse

    from lesson import recipe as recipes

    parser = argparse.ArgumentParser(description="Check, before anything starts, that the recipe of the "
                                                 "environment (EPOCHS=..., as the scripts pass it) fits this machine.")
    parser.add_argument("check", choices=["fits-machine"], help="fits-machine: the data fits the memory")
    parser.add_argument("--smoke-test", action="store_true", help="the --smoke-test recipe")
    parser.add_argument("--full", action="store_true", help="the --full recipe")
    args = parser.parse_args(argv)
    try:
        check_fits_memory(recipes.from_environment(recipes.mode_of(args)))
    except ValueError as error:
        print(f"cluster_checks: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
