"""The pods of k8s/ray-cluster.yaml as KubeRay 1.7.0 would start them, rehearsed on this machine.

Used by scripts/experiments/rehearse-pods.sh (Linux, root), which gives each pod its own
network namespace, address, memory cgroup and CFS CPU quota. This module does the parts that
read the manifest and the cgroups:

    python -m tools.pod_rehearsal plan --dir DIR --workers N [--worker-memory 1Gi] ...
        writes DIR/pods/NAME/{env,start.sh} for every pod and prints one line per pod:
        NAME ADDRESS CFS_QUOTA_US MEMORY_BYTES SHM_BYTES RAY_CPUS
    python -m tools.pod_rehearsal submitter --dir DIR --job-id ID --entrypoint-file FILE ...
        adds the RayJob's submitter pod (k8s/ray-job.yaml's limits, KubeRay's submit command)
    python -m tools.pod_rehearsal snapshot --dir DIR --phase NAME
        adds every pod's cgroup figures (memory peak, OOM kills, CPU throttling) to
        DIR/cgroups.json, then resets the memory peaks for the next phase
    python -m tools.pod_rehearsal report --dir DIR [--out FILE]
        prints them as a table against the limits, says in words which pod was OOM-killed (by
        the kernel at its limit, or by Ray's memory monitor at 95% of it) and what to raise, and
        writes FILE (JSON); exits 3 when a pod was OOM-killed

The `ray start` command line follows KubeRay v1.7.0's ray-operator/controllers/ray/common/pod.go:
setMissingRayStartParams (a worker's `address` is the head's address and port 6379;
`dashboard-host` 0.0.0.0 on the head; `metrics-export-port` 8080; `block`;
`dashboard-agent-listen-port` 52365), generateRayStartCommand (`num-cpus` from the CPU limit and
`memory` from the memory limit when rayStartParams do not give them), convertParamMap (the
flags sorted by name, `--flag=value`, `true` as a bare `--flag`) and BuildPod (`ulimit -n
${RAY_START_ULIMIT_OPEN_FILES:-65536}; ray start ...`); the environment follows
setContainerEnvVars and SetContainerTokenAuthEnvVars (RAY_ADDRESS, RAY_PORT,
RAY_CLUSTER_NAME, KUBERAY_GEN_RAY_START_CMD, RAY_AUTH_MODE and RAY_AUTH_TOKEN, ...). The
container's own env is kept, except the variables that name in-cluster Services (the
checkpoint store, Prometheus, Grafana), which the rehearsal does not run.
"""

import argparse
import json
import math
import re
import shlex
import sys
from pathlib import Path

import yaml

from tools.pod_rehearsal_report import CFS_PERIOD_US, snapshot, summary, table

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST = REPO_ROOT / "k8s" / "ray-cluster.yaml"
SUBNET = "10.244.77"  # the pods' addresses: .2 the head, .3, .4, ... the workers
HEAD_PORT = "6379"  # GetHeadPort: rayStartParams has no `port`, so Ray's default
DASHBOARD_AGENT_LISTEN_PORT = "52365"  # utils.DefaultDashboardAgentListenPort
# Env of the manifest that names in-cluster Services: nothing answers them here.
SERVICE_ENV = {"AWS_ENDPOINT_URL", "RAY_GRAFANA_HOST", "RAY_PROMETHEUS_HOST", "RAY_GRAFANA_IFRAME_HOST"}
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "": 1}


def quantity(text, cpu=False):
    """A Kubernetes quantity: CPUs as millicores ("1500m", "1") or bytes ("2304Mi")."""
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G)?", str(text).strip())
    if not match:
        raise ValueError(f"'{text}' is not a Kubernetes quantity (for example 1500m, 1, 2304Mi, 1Gi).")
    number, unit = float(match.group(1)), match.group(2) or ""
    if cpu:
        return int(number) if unit == "m" else int(number * 1000)
    if unit == "m":
        raise ValueError(f"'{text}': a memory quantity has no millis.")
    return int(number * UNITS[unit])


def ray_start_command(node_type, start_params, limits, head_address):
    """The `ray start` command KubeRay 1.7.0 builds for a pod (see the module docstring)."""
    params = {key: str(value) for key, value in start_params.items()}
    if node_type == "worker":
        params.setdefault("address", f"{head_address}:{HEAD_PORT}")
    else:
        params.setdefault("dashboard-host", "0.0.0.0")
    params.setdefault("metrics-export-port", "8080")
    params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", DASHBOARD_AGENT_LISTEN_PORT)
    if "num-cpus" not in params and "cpu" in limits:
        params["num-cpus"] = str(math.ceil(quantity(limits["cpu"], cpu=True) / 1000))  # Quantity.Value() rounds up
    if "memory" not in params and "memory" in limits:
        params["memory"] = str(quantity(limits["memory"]))
    flags = []
    for option in sorted(params):
        value = params[option]
        if value.lower() in ("true", "false") and option not in ("log-color", "include-dashboard", "include-log-monitor"):
            if value.lower() == "true":
                flags.append(f"--{option}")
        else:
            flags.append(f"--{option}={value}")
    return " ".join(["ray", "start", *(["--head"] if node_type == "head" else []), *flags]), params


def pods(manifest_path, workers, overrides, token):
    """Every pod of the manifest with `workers` worker pods: name, address, limits, command, env."""
    manifest = yaml.safe_load(Path(manifest_path).read_text())
    cluster_name = manifest["metadata"]["name"]
    head_address = f"{SUBNET}.2"
    groups = [("head", manifest["spec"]["headGroupSpec"], 1)]
    groups += [("worker", group, workers) for group in manifest["spec"]["workerGroupSpecs"][:1]]
    found = []
    for node_type, group, count in groups:
        container = group["template"]["spec"]["containers"][0]
        limits = dict(container["resources"]["limits"])
        limits.update({key: value for key, value in overrides.get(node_type, {}).items() if value})
        shm = [volume for volume in group["template"]["spec"].get("volumes", []) if volume["name"] == "dshm"]
        command, params = ray_start_command(node_type, group["rayStartParams"], limits, head_address)
        for index in range(1, count + 1):
            name = "head" if node_type == "head" else f"worker-{index}"
            address = head_address if node_type == "head" else f"{SUBNET}.{index + 2}"
            env = {item["name"]: item["value"] for item in container.get("env", [])
                   if "value" in item and item["name"] not in SERVICE_ENV}
            env.update({"RAY_CLUSTER_NAME": cluster_name, "RAY_CLUSTER_NAMESPACE": "default",
                        "RAY_CLOUD_INSTANCE_ID": f"{cluster_name}-{name}", "RAY_NODE_TYPE_NAME": group.get("groupName", "headgroup"),
                        "KUBERAY_GEN_RAY_START_CMD": command, "RAY_PORT": HEAD_PORT,
                        "RAY_ADDRESS": f"{'127.0.0.1' if node_type == 'head' else head_address}:{HEAD_PORT}",
                        "RAY_USAGE_STATS_KUBERAY_IN_USE": "1", "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE": "1",
                        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                        # The rehearsal's one addition: Ray's usage report would try to leave the machine.
                        "RAY_USAGE_STATS_ENABLED": "0"})
            if node_type == "worker":
                env.update({"FQ_RAY_IP": head_address, "RAY_IP": head_address})
            found.append({"name": name, "node_type": node_type, "address": address,
                          "cpu_millis": quantity(limits["cpu"], cpu=True), "memory_bytes": quantity(limits["memory"]),
                          "shm_bytes": quantity(shm[0]["emptyDir"]["sizeLimit"]) if shm else 0,
                          "num_cpus": float(params.get("num-cpus", 0)), "command": command, "env": env})
    return found


JOB_MANIFEST = REPO_ROOT / "k8s" / "ray-job.yaml"
SUBMITTER_ADDRESS = f"{SUBNET}.250"
DASHBOARD_PORT = 8265  # utils.DefaultDashboardPort


def submitter(job_manifest, job_id, entrypoint, token):
    """The RayJob's submitter pod (K8sJobMode): the limits of k8s/ray-job.yaml's
    submitterPodTemplate, and the shell command KubeRay 1.7.0's BuildJobSubmitCommand
    (ray-operator/controllers/ray/common/job.go) writes: wait for the dashboard's GCS health,
    submit unless `ray job status` knows the ID, then follow the logs. The env of
    rayjob_controller.go: PYTHONUNBUFFERED, RAY_DASHBOARD_ADDRESS, RAY_JOB_SUBMISSION_ID, the token."""
    manifest = yaml.safe_load(Path(job_manifest).read_text())
    container = manifest["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
    limits = container["resources"]["limits"]
    dashboard = f"{SUBNET}.2:{DASHBOARD_PORT}"
    address = f"http://{dashboard}"
    health = ("python -c \"import urllib.request; r=urllib.request.urlopen('%s', timeout=%d); "
              "exit(0 if b'success' in r.read() else 1)\"") % (f"{address}/api/gcs_healthz", 10)
    command = " ".join([
        "until", health, ">/dev/null", "2>&1", ";", "do", "echo",
        json.dumps(f"Waiting for Ray Dashboard GCS to become healthy at {address} ..."), ";", "sleep", "2", ";", "done", ";",
        "if", "!", "ray", "job", "status", "--address", address, job_id, ">/dev/null", "2>&1", ";", "then",
        "ray", "job", "submit", "--address", address, "--no-wait", "--submission-id", job_id, "--", entrypoint.strip(), ";",
        "fi", ";", "ray", "job", "logs", "--address", address, "--follow", job_id])
    env = {"PYTHONUNBUFFERED": "1", "RAY_DASHBOARD_ADDRESS": dashboard, "RAY_JOB_SUBMISSION_ID": job_id,
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    return {"name": "submitter", "node_type": "submitter", "address": SUBMITTER_ADDRESS,
            "cpu_millis": quantity(limits["cpu"], cpu=True), "memory_bytes": quantity(limits["memory"]),
            "shm_bytes": 64 * 2**20, "num_cpus": 0.0, "command": command, "env": env}


def write_plan(directory, found):
    """Each pod's env (the container's) and start.sh (its args), and plan.json."""
    for pod in found:
        pod_dir = Path(directory) / "pods" / pod["name"]
        pod_dir.mkdir(parents=True, exist_ok=True)
        # The token is a secret: the env file is readable by its owner alone.
        env_file = pod_dir / "env"
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"export {key}={shlex.quote(value)}\n" for key, value in sorted(pod["env"].items())))
        if pod["node_type"] == "submitter":  # the Job's container: bash -lce -- ARGS
            script = f"# The submitter's args, as KubeRay 1.7.0's BuildJobSubmitCommand writes them.\nset -e\n{pod['command']}\n"
        else:
            script = (f"# The container's args, as KubeRay 1.7.0's BuildPod writes them.\n"
                      f"ulimit -n ${{RAY_START_ULIMIT_OPEN_FILES:-65536}}; {pod['command']}\n")
        (pod_dir / "start.sh").write_text(script)
    plan_file = Path(directory) / "plan.json"
    known = [pod for pod in json.loads(plan_file.read_text())] if plan_file.exists() and found[0]["node_type"] == "submitter" else []
    public = known + [{key: value for key, value in pod.items() if key != "env"} for pod in found]
    plan_file.write_text(json.dumps(public, indent=2) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="write each pod's env and start.sh; print the pods")
    plan.add_argument("--dir", required=True)
    plan.add_argument("--workers", type=int, required=True)
    plan.add_argument("--manifest", default=str(MANIFEST))
    plan.add_argument("--token-file", required=True)
    for node_type in ("head", "worker"):
        plan.add_argument(f"--{node_type}-memory", default="", help=f"replace the {node_type}'s memory limit")
        plan.add_argument(f"--{node_type}-cpu", default="", help=f"replace the {node_type}'s CPU limit")
    submit = commands.add_parser("submitter", help="write the RayJob submitter pod's env and start.sh; print it")
    submit.add_argument("--dir", required=True)
    submit.add_argument("--job-id", required=True)
    submit.add_argument("--entrypoint-file", required=True)
    submit.add_argument("--token-file", required=True)
    submit.add_argument("--manifest", default=str(JOB_MANIFEST))
    snap = commands.add_parser("snapshot", help="record every pod's cgroup figures for a phase")
    snap.add_argument("--dir", required=True)
    snap.add_argument("--phase", required=True)
    rep = commands.add_parser("report", help="the figures against the limits, in a table and in words")
    rep.add_argument("--dir", required=True)
    rep.add_argument("--out", default="")
    args = parser.parse_args(argv)
    try:
        if args.command == "plan":
            if not 1 <= args.workers <= 200:
                raise ValueError(f"--workers must be between 1 and 200, got {args.workers}.")
            overrides = {"head": {"memory": args.head_memory, "cpu": args.head_cpu},
                         "worker": {"memory": args.worker_memory, "cpu": args.worker_cpu}}
            for node_type, given in overrides.items():  # a bad quantity fails here, before anything starts
                given["memory"] and quantity(given["memory"])
                given["cpu"] and quantity(given["cpu"], cpu=True)
            found = pods(args.manifest, args.workers, overrides, Path(args.token_file).read_text().strip())
            write_plan(args.dir, found)
            for pod in found:
                print(pod["name"], pod["address"], pod["cpu_millis"] * CFS_PERIOD_US // 1000, pod["memory_bytes"],
                      pod["shm_bytes"], f"{pod['num_cpus']:g}")
        elif args.command == "submitter":
            pod = submitter(args.manifest, args.job_id, Path(args.entrypoint_file).read_text(),
                            Path(args.token_file).read_text().strip())
            write_plan(args.dir, [pod])
            print(pod["name"], pod["address"], pod["cpu_millis"] * CFS_PERIOD_US // 1000, pod["memory_bytes"],
                  pod["shm_bytes"], "0")
        elif args.command == "snapshot":
            snapshot(args.dir, args.phase)
        else:
            result = summary(args.dir)
            print(table(result))
            for finding in result["findings"]:
                print(finding)
            if args.out:
                Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            return 3 if result["oom_killed"] else 0
    except (OSError, ValueError, KeyError) as error:
        print(f"pod_rehearsal: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
