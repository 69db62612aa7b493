#!/usr/bin/env bash
# The Kubernetes target of run-benchmark.sh: runs the baseline, the Ray training, the
# comparison and the report inside the Ray head pod of the RayCluster that install-ray.sh
# created, and copies the run folder back. Sourced by run-benchmark.sh, chaos.sh,
# run-rayjob.sh and open-dashboard.sh after lib.sh; it has no main.
#
# Defines:
#   minikube_target_available  0 when kubectl points at the minikube profile and the
#                              RayCluster has a running head pod; quiet; sets
#                              MINIKUBE_TARGET_REASON on success.
#   run_minikube_target        runs the benchmark; reads NUM_WORKERS (empty = every worker
#                              slot Ray has), CPUS_PER_WORKER (empty = the Ray CPUs of one
#                              worker pod), EPOCHS, BATCH_SIZE (per worker), DATASET,
#                              TRAIN_SIZE, TEST_SIZE, RESULTS_DIR, CHECKPOINT, RESUME,
#                              MAX_FAILURES (defaults 0, 0, and lesson/recipe.py's),
#                              and MINIKUBE_PROFILE,
#                              RAY_NAMESPACE, RAY_CLUSTER_NAME, K8S_CHECKPOINT_PATH (lib.sh).
#   require_k8s_checkpoint_storage CONTEXT HEAD
#                              fails with what to do unless the head pod has the keys
#                              of the checkpoint store of CHECKPOINTS=1 install-ray.sh.
#   prune_checkpoint_runs CONTEXT HEAD
#                              keeps the newest KEEP_RUNS runs in K8S_CHECKPOINT_PATH.
#   stop_pod_processes CONTEXT POD CONTAINER MARKER
#                              stops the processes in a pod whose command line holds MARKER.
#   copy_from_pod CONTEXT POD CONTAINER POD_DIR LOCAL_DIR
#                              copies a folder of a pod into a local one.
#   minikube_stop_pod_run      for an EXIT trap: stops the run that run_minikube_target
#                              started in the head pod, if one may still be running.
#   require_recipe_fits_pods   fails unless TRAIN_SIZE + TEST_SIZE fit the pods' memory.
#
# Nothing here needs the laptop's .venv: the report, too, is written in the head pod, and the
# whole run folder (JSON, REPORT.md, plots) is copied back.
#
# Worker count and CPUs come from Ray's own view (ray.nodes() run in the head pod), not
# from the pod specs: a worker pod that is Running but has not joined Ray yet, or that
# Ray sees with fewer CPUs, would make the trainer wait for resources that never come.

# Where the results are written inside the head pod; one folder per run.
POD_RESULTS_ROOT="${POD_RESULTS_ROOT:-/tmp/results}"

# Printed by the head pod: "RAY_WORKER_CPUS 1 1" = the CPUs of each live node that has any.
# The head offers 0 CPUs (num-cpus: "0"), so only worker pods are listed.
MINIKUBE_RAY_NODES_PY='
import ray
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
cpus = [int(node["Resources"].get("CPU", 0)) for node in ray.nodes()
        if node["Alive"] and node["Resources"].get("CPU", 0) >= 1]
print("RAY_WORKER_CPUS", *cpus)
'

# Run in a pod: stop the processes whose command line holds the marker (argv[1]), SIGINT first
# (a Ray driver then stops its workers and records the run as interrupted), SIGKILL what is
# left after 20 s. Python, since the image (Ubuntu) has no pkill. Prints STOPPED or LEFT pids.
STOP_PROCESSES_PY='
import os, signal, sys, time
marker = sys.argv[1].encode()
def matching():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as cmdline:
                    if marker in cmdline.read().replace(b"\0", b" "):
                        found.append(int(entry))
            except OSError:
                pass
    return found
for signum, grace in ((signal.SIGINT, 20), (signal.SIGKILL, 5)):
    for pid in matching():
        try:
            os.kill(pid, signum)
        except OSError:
            pass
    deadline = time.time() + grace
    while matching() and time.time() < deadline:
        time.sleep(0.5)
left = matching()
print("LEFT %s" % left if left else "STOPPED")
'

# Run in the head pod: delete all but the newest argv[2] runs under argv[1] (s3://bucket/prefix)
# of the in-cluster store, newest by their latest object. Same endpoint and keys as the runs
# (AWS_ENDPOINT_URL and the AWS_* keys of the pod). Prints KEPT N and REMOVED NAME MB lines.
PRUNE_RUNS_PY='
import os, sys
from pyarrow import fs
location, keep = sys.argv[1], int(sys.argv[2])
options = {}
endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
if endpoint:
    scheme, _, host = endpoint.rpartition("://")
    options.update(endpoint_override=host.rstrip("/"), scheme=scheme or "https",
                   region=os.environ.get("AWS_REGION", "us-east-1"))
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
store = fs.S3FileSystem(access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
                        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"), **options)
root = location[len("s3://"):].strip("/")
runs = []
for run in store.get_file_info(fs.FileSelector(root, allow_not_found=True)):
    if run.type == fs.FileType.Directory:
        files = [info for info in store.get_file_info(fs.FileSelector(run.path, recursive=True))
                 if info.type == fs.FileType.File]
        newest = max((info.mtime.timestamp() for info in files if info.mtime), default=0)
        runs.append((newest, run.path, sum(info.size or 0 for info in files)))
runs.sort(reverse=True)
for _, path, size in runs[keep:]:
    store.delete_dir(path)
    print("REMOVED %s %.0f" % (path.rsplit("/", 1)[-1], size / 1e6))
print("KEPT %d" % min(keep, len(runs)))
'

# True when kubectl points at the minikube profile and the RayCluster has a running head pod.
minikube_target_available() {
  load_k8s_settings
  command -v kubectl >/dev/null 2>&1 || return 1
  local context head
  context="$(current_kube_context)"
  [[ -n "$context" && "$context" == "$MINIKUBE_PROFILE" ]] || return 1
  head="$(ray_head_pod --context "$context" --request-timeout=5s)"
  [[ -n "$head" ]] || return 1
  # shellcheck disable=SC2034 # read by run-benchmark.sh, which sources this file
  MINIKUBE_TARGET_REASON="kube-context $context has RayCluster $RAY_CLUSTER_NAME (head pod $head)"
  return 0
}

# Run a command in the head pod's Ray container (with DEMO_ALLOCATOR, when it is set here).
minikube_exec_head() {
  local context="$1" head="$2"
  shift 2
  local -a settings=()
  [[ -z "${DEMO_ALLOCATOR:-}" ]] || settings=(env "DEMO_ALLOCATOR=$DEMO_ALLOCATOR")
  kubectl --context "$context" --namespace "$RAY_NAMESPACE" exec "$head" -c ray-head -- \
    ${settings[@]+"${settings[@]}"} "$@"
}

# Fail with what to do unless the head pod can use the in-cluster checkpoint store.
# Checkpoints need storage every pod reaches; the pods get its keys from the Secret that
# CHECKPOINTS=1 ./scripts/install-ray.sh creates (k8s/checkpoint-storage.yaml).
require_k8s_checkpoint_storage() {
  local context="$1" head="$2"
  if ! minikube_exec_head "$context" "$head" printenv AWS_ACCESS_KEY_ID >/dev/null 2>&1; then
    die "Checkpoints on Kubernetes need the in-cluster checkpoint store: the pods share no disk. Install it with 'CHECKPOINTS=1 ./scripts/install-ray.sh' (it restarts the Ray pods so they get its keys), then run this again. Or leave CHECKPOINT and RESUME unset."
  fi
}

# Keep the newest KEEP_RUNS runs in the checkpoint store (k8s/checkpoint-storage.yaml states
# its size budget), so that it never fills its volume and gets evicted with every checkpoint.
# A failure only warns: the run itself can still go ahead.
prune_checkpoint_runs() {
  local context="$1" head="$2" output
  require_positive_int KEEP_RUNS "$KEEP_RUNS"
  if output="$(minikube_exec_head "$context" "$head" python -c "$PRUNE_RUNS_PY" "$K8S_CHECKPOINT_PATH" "$KEEP_RUNS" 2>&1)"; then
    local removed
    removed="$(grep -c '^REMOVED ' <<<"$output" || true)"
    log "Checkpoint store: kept the newest $KEEP_RUNS run(s) of $K8S_CHECKPOINT_PATH (KEEP_RUNS), removed $removed older one(s)."
  else
    warn "Could not remove old runs from the checkpoint store ($output). It holds about 2 GiB; if it fills up its pod is evicted and every checkpoint is lost. Remove old runs by hand or reinstall the store: CHECKPOINTS=1 ./scripts/install-ray.sh"
  fi
}

# Fail before any training when the recipe holds more examples (TRAIN_SIZE + TEST_SIZE) than
# the pods of k8s/ray-cluster.yaml are sized for: its max-examples annotation, with the
# measured arithmetic beside it. Each worker holds the whole data set, so a bigger one would
# be OOM-killed mid-run instead.
require_recipe_fits_pods() {
  local manifest="$REPO_ROOT/k8s/ray-cluster.yaml" max examples=$((TRAIN_SIZE + TEST_SIZE))
  max="$(sed -n 's/^ *ray-parallel-training-demo\/max-examples: *"\{0,1\}\([0-9][0-9]*\)"\{0,1\} *$/\1/p' "$manifest" | head -n 1)"
  [[ -n "$max" ]] || return 0
  if ((examples > max)); then
    die "TRAIN_SIZE + TEST_SIZE = $examples examples, but the pods of k8s/ray-cluster.yaml are sized for at most $max (its max-examples annotation: each worker and the baseline hold the whole data set, about 35 KB per example). CIFAR-10 size (--full, 60000) needs a head of 4608 MiB and workers of 4352 MiB (measured; the arithmetic is at the top of k8s/ray-cluster.yaml): set those and max-examples there, start nodes of 11 GiB (NODE_MEMORY=11264 ./scripts/setup-minikube.sh on a new profile) and run ./scripts/install-ray.sh. Or lower TRAIN_SIZE."
  fi
}

# Stop the processes in POD (container CONTAINER) whose command line holds MARKER.
stop_pod_processes() {
  local context="$1" pod="$2" container="$3" marker="$4" output
  log "Stopping the processes of this run in pod $pod (those with '$marker' in their command line)."
  output="$(kubectl --context "$context" --namespace "$RAY_NAMESPACE" exec "$pod" -c "$container" -- \
    python -c "$STOP_PROCESSES_PY" "$marker" 2>&1)" || true
  if [[ "$output" != *STOPPED* ]]; then
    warn "Could not confirm that they stopped (${output:-no answer from the pod}). Check with: kubectl exec -n $RAY_NAMESPACE $pod -c $container -- ps -ef"
  fi
}

# Copy the folder POD_DIR of a pod into LOCAL_DIR (through tar, as kubectl cp does, but with
# plain tar semantics: the folder's content lands in LOCAL_DIR).
copy_from_pod() {
  local context="$1" pod="$2" container="$3" pod_dir="$4" local_dir="$5"
  mkdir -p "$local_dir"
  kubectl --context "$context" --namespace "$RAY_NAMESPACE" exec "$pod" -c "$container" -- \
    tar -C "$pod_dir" -cf - . | tar -C "$local_dir" -xf - ||
    die "Could not copy $pod_dir from pod '$pod' to $local_dir (output above)."
}

# Copy a run's results from the head pod and check that every file of a run came back.
copy_results_from_head() {
  local context="$1" head="$2" pod_dir="$3" local_dir="$4" num_workers="$5" file
  copy_from_pod "$context" "$head" ray-head "$pod_dir" "$local_dir"
  for file in baseline_results.json "ray_results_${num_workers}workers.json" comparison.json REPORT.md; do
    [[ -f "$local_dir/$file" ]] || die "$file is missing from the results copied from $head:$pod_dir to $local_dir."
  done
  log "Results copied from $head:$pod_dir to $local_dir (JSON, REPORT.md, plots)."
}

# For an EXIT trap: stop the processes of the run in the head pod (ending `kubectl exec`
# does not end them, and the next run would find the CPUs busy).
minikube_stop_pod_run() {
  if [[ -n "${MINIKUBE_POD_RUN_DIR:-}" && "${MINIKUBE_POD_RUNNING:-0}" == 1 ]]; then
    MINIKUBE_POD_RUNNING=0
    stop_pod_processes "$MINIKUBE_CONTEXT" "$MINIKUBE_HEAD" ray-head "--results-dir $MINIKUBE_POD_RUN_DIR"
  fi
}

# Run the baseline, the Ray training, the comparison and the report in the head pod; copy the
# run folder back.
run_minikube_target() {
  load_k8s_settings
  : "${EPOCHS:?EPOCHS must be set (run-benchmark.sh sets it)}"
  : "${BATCH_SIZE:?BATCH_SIZE must be set (run-benchmark.sh sets it)}"
  : "${DATASET:?DATASET must be set (run-benchmark.sh sets it)}"
  : "${TRAIN_SIZE:?TRAIN_SIZE must be set (run-benchmark.sh sets it)}"
  : "${TEST_SIZE:?TEST_SIZE must be set (run-benchmark.sh sets it)}"
  : "${RESULTS_DIR:?RESULTS_DIR must be set (run-benchmark.sh sets it)}"
  local num_workers="${NUM_WORKERS:-}" cpus_per_worker="${CPUS_PER_WORKER:-}"
  local checkpoint="${CHECKPOINT:-0}" resume="${RESUME:-0}"
  local -a storage=()
  require_recipe_fits_pods

  require_tool kubectl "https://kubernetes.io/docs/tasks/tools/"
  require_minikube_context
  local context head
  context="$(current_kube_context)"
  head="$(ray_head_pod --context "$context" --request-timeout=10s)"
  if [[ -z "$head" ]]; then
    die "No running Ray head pod (labels ray.io/cluster=$RAY_CLUSTER_NAME, ray.io/node-type=head) in namespace '$RAY_NAMESPACE' of context '$context'. Run ./scripts/install-ray.sh, then check 'kubectl get pods -n $RAY_NAMESPACE'."
  fi
  log "Ray head pod: $head (context $context, namespace $RAY_NAMESPACE)"
  if [[ "$checkpoint$resume" != 00 ]]; then
    require_k8s_checkpoint_storage "$context" "$head"
    prune_checkpoint_runs "$context" "$head"
    storage=(--storage-path "$K8S_CHECKPOINT_PATH")
    log "Checkpoints every epoch in $K8S_CHECKPOINT_PATH (the in-cluster store)$([[ "$resume" == 0 ]] || echo "; resuming the latest interrupted run")."
  fi

  # Ask Ray which worker nodes have joined and how many CPUs each offers.
  local output line
  local -a worker_cpus=()
  output="$(minikube_exec_head "$context" "$head" python -c "$MINIKUBE_RAY_NODES_PY")" ||
    die "Could not ask Ray for its nodes in pod '$head' (output above). Is Ray running? 'kubectl logs -n $RAY_NAMESPACE $head'"
  line="$(grep '^RAY_WORKER_CPUS' <<<"$output" || true)"
  [[ -n "$line" ]] || die "Ray did not report its nodes (pod '$head' printed: $output)."
  read -r -a worker_cpus <<<"${line#RAY_WORKER_CPUS}"
  if ((${#worker_cpus[@]} == 0)); then
    die "No Ray worker has joined the cluster yet (Ray sees no node with CPUs). Check 'kubectl get pods -n $RAY_NAMESPACE -l ray.io/cluster=$RAY_CLUSTER_NAME' and wait for the workers to be Ready, or re-run ./scripts/install-ray.sh."
  fi

  # Default CPUs: the smallest worker, so one training worker fits on every pod.
  local cpus slots=0
  if [[ -z "$cpus_per_worker" ]]; then
    cpus_per_worker="${worker_cpus[0]}"
    for cpus in "${worker_cpus[@]}"; do
      if ((cpus < cpus_per_worker)); then
        cpus_per_worker="$cpus"
      fi
    done
  fi
  require_positive_int CPUS_PER_WORKER "$cpus_per_worker"
  for cpus in "${worker_cpus[@]}"; do
    slots=$((slots + cpus / cpus_per_worker))
  done
  if ((slots == 0)); then
    die "CPUS_PER_WORKER=$cpus_per_worker does not fit: Ray's ${#worker_cpus[@]} worker pod(s) have (${worker_cpus[*]}) CPUs each. Lower CPUS_PER_WORKER, or raise the workers' CPUs (limits and num-cpus) in k8s/ray-cluster.yaml and re-run ./scripts/install-ray.sh."
  fi
  [[ -n "$num_workers" ]] || num_workers="$slots"
  require_positive_int NUM_WORKERS "$num_workers"
  if ((num_workers > slots)); then
    die "NUM_WORKERS=$num_workers x CPUS_PER_WORKER=$cpus_per_worker does not fit: Ray has ${#worker_cpus[@]} worker pod(s) with CPUs (${worker_cpus[*]}), room for $slots such worker(s). Lower NUM_WORKERS or CPUS_PER_WORKER, or raise 'replicas' in k8s/ray-cluster.yaml (at most maxReplicas: 3) and re-run ./scripts/install-ray.sh."
  fi
  log "Ray sees ${#worker_cpus[@]} worker pod(s) with CPUs (${worker_cpus[*]}); running $num_workers worker(s) x $cpus_per_worker CPU(s)."

  # A folder of its own per run; its path, in every command line, names this run's processes.
  local pod_dir
  pod_dir="$POD_RESULTS_ROOT/run-$(date +%Y%m%d-%H%M%S)-$$"
  MINIKUBE_CONTEXT="$context" MINIKUBE_HEAD="$head" MINIKUBE_POD_RUN_DIR="$pod_dir" MINIKUBE_POD_RUNNING=1

  # Same global batch as the Ray run, on the CPUs of one Ray worker: a fair baseline.
  log "1/4 Baseline in the head pod: one process, $cpus_per_worker CPU(s), batch $((BATCH_SIZE * num_workers))."
  training_args baseline "$num_workers" "$cpus_per_worker" "$pod_dir"
  minikube_exec_head "$context" "$head" python "${TRAINING_ARGS[@]}" ||
    die "The baseline failed in pod '$head' (output above)."

  log "2/4 Ray training: $num_workers worker(s) x $cpus_per_worker CPU(s), batch $BATCH_SIZE per worker."
  training_args ray "$num_workers" "$cpus_per_worker" "$pod_dir" --address auto \
    ${storage[@]+"${storage[@]}"}
  minikube_exec_head "$context" "$head" python "${TRAINING_ARGS[@]}" ||
    die "Ray training failed in pod '$head' (output above). Worker logs: kubectl logs -n $RAY_NAMESPACE -l ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=worker"

  log "3/4 Comparison:"
  minikube_exec_head "$context" "$head" python -m analysis.compare \
    --results-dir "$pod_dir" --num-workers "$num_workers" ||
    die "The comparison failed in pod '$head' (output above)."

  log "4/4 Report (REPORT.md and plots, written in the pod):"
  minikube_exec_head "$context" "$head" python -m analysis.report --run-dir "$pod_dir" ||
    die "The report could not be written in pod '$head' (output above); the JSON results are in $head:$pod_dir."
  MINIKUBE_POD_RUNNING=0

  copy_results_from_head "$context" "$head" "$pod_dir" "$RESULTS_DIR" "$num_workers"
}
