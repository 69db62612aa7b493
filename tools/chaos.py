"""The command line of scripts/experiments/chaos.sh: watch a run's progress, note the failure it
injects, find the pod of a Ray node, and explain the run's recovery afterwards.

    python -m tools.chaos progress RUN_DIR RANK       # 'EPOCH NODE_ID' of a running run
    python -m tools.chaos mark-failure RUN_DIR NODE_ID RANK AFTER_EPOCH HOW
    python -m tools.chaos node-ip NODE_ID             # run on the cluster (the head pod)
    python -m tools.chaos report results/latest/ray_results_2workers.json
"""

import time

from harness import storage
from harness.run_state import FAILURE_FILE, PROGRESS_FILE, read_json


def progress_line(run_dir, rank):
    """'EPOCH NODE_ID': the latest registered checkpoint epoch and the node of `rank` in
    the latest attempt ('-' while unknown)."""
    progress = read_json(storage.join(run_dir, PROGRESS_FILE)) or {}
    attempts = progress.get("attempts") or []
    node = attempts[-1]["nodes"].get(str(rank), "-") if attempts else "-"
    return f"{progress.get('registered_checkpoint_epoch', 0)} {node}"


def recovery_report(record):
    """Lines that explain a run's restarts and what one failure cost."""
    lines = [f"Epochs completed: {record['epochs_completed']} of {record.get('epochs_requested')}; "
             f"samples per epoch: {record['samples_per_epoch']}; test accuracy: {record['test_accuracy']:.4f}; "
             f"weights identical on all workers: {record.get('weights_identical')}",
             f"Restarts of the worker group: {record.get('restarts', 0)}, resumed from epoch(s): "
             f"{record.get('restart_resumed_from_epochs', [])}"]
    failure = record.get("injected_failure") or {}
    if "time_lost_seconds" not in failure:
        return lines
    epoch_times = record["epoch_times_seconds"]
    resumed_epoch = failure["resumed_from_epoch"] + 1  # 1-based: the epoch trained again first
    steady = [seconds for number, seconds in enumerate(epoch_times, start=1)
              if number not in (1, resumed_epoch)]
    epoch_seconds = sorted(steady)[len(steady) // 2] if steady else sum(epoch_times) / len(epoch_times)
    # The first epoch of a new worker group traces the graph again: that is lost time too.
    retrace = max(epoch_times[resumed_epoch - 1] - epoch_seconds, 0.0) if resumed_epoch <= len(epoch_times) else 0.0
    lost = failure["time_lost_seconds"] + retrace
    lines += [
        f"Killed node {str(failure.get('node_id', '?'))[:8]} (rank {failure.get('rank')}) "
        f"{failure.get('redone_seconds', 0):.1f}s after the epoch {failure.get('after_epoch')} checkpoint.",
        f"Kill -> first batch of the new worker group: {failure['detect_and_restart_seconds']:.1f}s "
        "(Ray notices the dead node, stops the group, places a new one, TensorFlow starts, the "
        "checkpoint loads)",
        f"Work done again since the checkpoint: {failure.get('redone_seconds', 0):.1f}s; "
        f"graph traced again in the resumed epoch: {retrace:.1f}s",
        f"Time lost to one worker failure: {lost:.1f}s = {lost / epoch_seconds:.2f} of a "
        f"{epoch_seconds:.1f}s epoch",
    ]
    return lines


def live_node_address(node_id):
    """The IP of the live Ray node `node_id` of the cluster on this machine, or None.

    On Kubernetes a Ray node is a pod and this is the pod's IP, which names the pod to delete.
    """
    import ray

    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    try:
        for node in ray.nodes():
            if node["NodeID"] == node_id and node["Alive"]:
                return node["NodeManagerAddress"]
    finally:
        ray.shutdown()
    return None


def main(argv=None):
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    progress = commands.add_parser("progress", help="print 'EPOCH NODE_ID' of a running run")
    progress.add_argument("run_dir")
    progress.add_argument("rank", type=int)
    report = commands.add_parser("report", help="explain the restarts recorded in a results JSON")
    report.add_argument("results_file")
    mark = commands.add_parser("mark-failure", help="note in a run's folder the failure about to be injected")
    mark.add_argument("run_dir")
    mark.add_argument("node_id")
    mark.add_argument("rank", type=int)
    mark.add_argument("after_epoch", type=int)
    mark.add_argument("how")
    node_ip = commands.add_parser("node-ip", help="print the IP of a live Ray node (run on the cluster)")
    node_ip.add_argument("node_id")
    args = parser.parse_args(argv)
    if args.command == "progress":
        print(progress_line(args.run_dir, args.rank))
        return 0
    if args.command == "mark-failure":
        storage.write_json(storage.join(args.run_dir, FAILURE_FILE), {
            "time": time.time(), "node_id": args.node_id, "rank": args.rank,
            "after_epoch": args.after_epoch, "how": args.how})
        return 0
    if args.command == "node-ip":
        address = live_node_address(args.node_id)
        if address is None:
            print(f"chaos: error: no live Ray node has ID {args.node_id}.", file=sys.stderr)
            return 2
        print(address)
        return 0
    record = read_json(args.results_file)
    if record is None:
        print(f"chaos: error: {args.results_file} is missing or not a results JSON.", file=sys.stderr)
        return 2
    print("\n".join(recovery_report(record)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
