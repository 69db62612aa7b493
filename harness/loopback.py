"""`ray start` for the local cluster, kept on loopback: nobody else on the network can use it.

Run as `python -m harness.loopback start ...` with `ray start`'s own flags
(scripts/local-cluster.sh does). Ray 2.60 would otherwise open the cluster to the network:
- `ray start --node-ip-address=127.0.0.1` replaces 127.0.0.1 by the machine's routable
  address (ray.scripts.scripts calls services.resolve_ip_for_localhost, which asks the
  routing table for the address it would use to reach 8.8.8.8; no packet is sent). Every
  server then takes its address from the node's: the GCS and the raylets listen on all
  interfaces (their gRPC servers keep to loopback only when the node's address is
  127.0.0.1), the dashboard agents and the runtime-env agents on the machine's address, and
  the metrics exporters of the autoscaler and the dashboard on 0.0.0.0. Ray's pull request
  59852 (January 2026) would bind them to the node's address, but this node's address is the
  routable one, so it would not help here.
- The Ray Client server starts on port 10001 whenever its dependencies are installed, as
  they are with ray[default]; nothing in this demo uses it (drivers connect to the GCS).

So this keeps the address given (127.0.0.1) and starts no Ray Client server. It also lets a
worker node join on macOS, where Ray refuses multi-node clusters unless told otherwise.
Drivers of this cluster set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (`local-cluster.sh env`):
then Ray's own client code resolves 127.0.0.1 to 127.0.0.1 too, not to the routable address,
where nothing listens any more. tests/test_local_cluster_security.py checks every port of a
running cluster from another network namespace.
"""

import sys


def keep_on_loopback():
    """Patch Ray's CLI: the node address as given, no Ray Client server, worker nodes allowed."""
    import ray._private.ray_constants as ray_constants
    import ray._private.services as services
    import ray.scripts.scripts as scripts

    services.resolve_ip_for_localhost = lambda host: host
    scripts.get_ray_client_dependency_error = lambda: "the demo does not use the Ray Client"
    ray_constants.ENABLE_RAY_CLUSTER = True
    return scripts


def driver_on_loopback(address):
    """In a driver about to call ray.init(address): for a loopback address, keep Ray's client
    code on loopback too (what RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 does when it is set before
    Ray is imported), so that a driver given 127.0.0.1:PORT by hand also reaches this cluster."""
    host = (address or "").rpartition(":")[0].strip("[]")
    if host in ("127.0.0.1", "localhost", "::1"):
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


def main():
    scripts = keep_on_loopback()
    sys.argv[0] = "ray"
    return scripts.main()


if __name__ == "__main__":
    sys.exit(main())
