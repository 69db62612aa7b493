"""Peak memory of the processes that will share each Kubernetes pod, read from /proc.

Used by scripts/experiments/measure-pod-memory.sh, which runs the benchmark on the local multi-node Ray
cluster. Each local Ray node stands for one pod of k8s/ray-cluster.yaml: the head node (GCS,
raylet, dashboard and its agents, plus the baseline and the Ray driver, which run in the head
pod on Kubernetes) and each worker node (raylet, agents and one Ray Train worker).

    python -m tools.pod_memory sample --cluster-dir DIR --phase NAME --out FILE
        samples every process of the cluster in DIR until SIGTERM, then writes FILE (JSON)
    python -m tools.pod_memory report --headroom 25 --out memory.json FILE...
        prints the table of peaks per pod and the pod sizes with that headroom

Linux only (it reads /proc); standard library only.

What is measured, per process: the peak resident set (VmHWM: everything the process had in
RAM at its busiest, shared libraries and shared memory included) and, sampled, the peak of
its private plus shared-memory pages (RssAnon + RssShmem: what the kernel cannot drop under
pressure; file pages such as TensorFlow's libraries can be re-read, shmem is Ray's object
store). A pod's peak is the largest sample of what its cgroup would be charged for: the private and
shared-memory pages of all its processes plus the file pages of its largest process once (all
processes map the same libraries); the report also gives the plain sum of the processes' peak
RSS, an upper bound that counts the libraries once per process.

pod_memory_sample.py samples; pod_memory_report.py sums the samples up into pod sizes.
"""

import argparse
import os
import sys

from tools.pod_memory_report import report
from tools.pod_memory_sample import sample


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sampler = commands.add_parser("sample", help="sample the cluster's processes until SIGTERM")
    sampler.add_argument("--cluster-dir", required=True)
    sampler.add_argument("--phase", required=True)
    sampler.add_argument("--out", required=True)
    sampler.add_argument("--interval", type=float, default=0.5)
    reporter = commands.add_parser("report", help="print the peaks per pod and the pod sizes")
    reporter.add_argument("files", nargs="+")
    reporter.add_argument("--headroom", type=int, default=25)
    reporter.add_argument("--recipe", default="")
    reporter.add_argument("--bounded", action="store_true", help="the phases were stopped early")
    reporter.add_argument("--interval", type=float, default=0.5, help="the sampling interval used")
    reporter.add_argument("--out")
    args = parser.parse_args(argv)
    if not os.path.isdir("/proc/self"):
        print("pod_memory: error: this needs Linux (/proc); run it on a Linux machine or VM.", file=sys.stderr)
        return 2
    return sample(args) if args.command == "sample" else report(args)


if __name__ == "__main__":
    sys.exit(main())
