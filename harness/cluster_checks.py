"""Fail fast, not forever: checks the driver makes before it starts the trainer.

Ray queues a request for resources the cluster does not have and waits for them without
end, and a driver pointed at an address where nothing answers retries for a minute. Both
are refused here in seconds, with what to change.
"""

import socket


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
