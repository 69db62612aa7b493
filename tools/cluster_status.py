"""The local cluster's nodes by name: what `./scripts/local-cluster.sh status` prints.

Ray's own `ray status` lists anonymous node IDs and adds up each node's memory, and every
local node claims this machine's memory, so it reported twice the machine. This names each
node as local-cluster.sh started it (the head, worker 1, worker 2, ... from its temp folder
CLUSTER_DIR/ray-worker-N), with the CPUs it offers to training, the cores its raylet is
pinned to, the CPUs in use, and the machine's real memory once. It needs the driver's
environment (`eval "$(./scripts/local-cluster.sh env)"`), which local-cluster.sh sets.
    .venv/bin/python -m tools.cluster_status
"""

import os
import re
import sys

WORKER_FOLDER = re.compile(r"/ray-worker-(\d+)/")


def node_name(node):
    """'head' or 'worker N', from the node's resources and its raylet's socket path."""
    if "node:__internal_head__" in node.get("Resources", {}):
        return "head"
    found = WORKER_FOLDER.search(node.get("RayletSocketName", "") + "/")
    return f"worker {found.group(1)}" if found else f"node {node['NodeID'][:8]}"


def pinned_cores(node):
    """The cores the node's raylet may run on (its taskset), found by its socket in the
    command lines of this machine's processes; None where it is not on this machine."""
    socket = node.get("RayletSocketName")
    for pid in (entry for entry in os.listdir("/proc") if entry.isdigit()) if socket and os.path.isdir("/proc") else ():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if f"--raylet_socket_name={socket}".encode() not in cmdline.read():
                    continue
            with open(f"/proc/{pid}/status", encoding="utf-8") as status:
                return next(line.split(":", 1)[1].strip() for line in status if line.startswith("Cpus_allowed_list"))
        except (OSError, StopIteration):
            continue
    return None


def describe(nodes, available_cpus, machine_memory_gib):
    """The status lines for Ray's node list (ray.nodes()) and its free CPUs."""
    alive = [node for node in nodes if node.get("Alive")]
    lines = [f"{len(alive)} node(s) alive:"]
    order = sorted(alive, key=lambda node: (node_name(node) != "head", node_name(node)))
    for node in order:
        cpus = int(node.get("Resources", {}).get("CPU", 0))
        cores = pinned_cores(node)
        role = "no CPUs for training (GCS, dashboard, the results collector)" if cpus == 0 else \
            f"{cpus} CPU{'s' if cpus != 1 else ''} for training" + (f", pinned to core(s) {cores}" if cores else "")
        lines.append(f"  {node_name(node):9} {role}  (node ID {node['NodeID'][:12]})")
    total = sum(int(node.get("Resources", {}).get("CPU", 0)) for node in alive)
    lines.append(f"CPUs in use by Ray tasks: {total - available_cpus:g} of {total}")
    if machine_memory_gib:
        lines.append(f"Memory: this machine has {machine_memory_gib:.1f} GiB, shared by every node (`ray status` "
                     "adds it up once per node)")
    return lines


def main(argv=None):
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    if not os.environ.get("RAY_ADDRESS"):
        # ray.init() without an address would start a Ray instance of its own, not look at a cluster.
        print("cluster_status: error: RAY_ADDRESS is not set. Run ./scripts/local-cluster.sh status, "
              'or eval "$(./scripts/local-cluster.sh env)" first.', file=sys.stderr)
        return 2
    from harness import loopback
    import ray

    loopback.driver_on_loopback(os.environ["RAY_ADDRESS"])
    ray.init(address=os.environ.get("RAY_ADDRESS"), logging_level="ERROR", log_to_driver=False)
    try:
        nodes, free = ray.nodes(), ray.available_resources().get("CPU", 0.0)
    finally:
        ray.shutdown()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print("\n".join(describe(nodes, free, memory)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
