#!/usr/bin/env bash
# The Minikube target: the RayCluster that ./scripts/install-ray.sh created. The benchmark,
# the chaos demo's run and the report run inside its Ray head pod (no .venv on this machine),
# and the run folder is copied back; the dashboard is forwarded with `kubectl port-forward`;
# a RayJob runs the benchmark in a cluster of its own. Sourced by scripts/lib/targets.sh; it
# implements the functions listed there and has no main.
#
# Reads MINIKUBE_PROFILE, RAY_NAMESPACE, RAY_CLUSTER_NAME, K8S_CHECKPOINT_PATH and KEEP_RUNS
# (scripts/lib/k8s.sh), and the command's settings. An empty NUM_WORKERS or CPUS_PER_WORKER
# given to the benchmark is taken from Ray's view of the pods: every worker slot Ray has, the
# CPUs of its smallest worker pod.

# shellcheck disable=SC2034 # set here, read by the scripts that source this file

# shellcheck source=scripts/lib/k8s.sh
source "$SCRIPTS_DIR/lib/k8s.sh"
# shellcheck source=scripts/lib/pod.sh
source "$SCRIPTS_DIR/lib/pod.sh"
# shellcheck source=scripts/lib/checkpoint_store.sh
source "$SCRIPTS_DIR/lib/checkpoint_store.sh"
# shellcheck source=scripts/lib/forwards.sh
source "$SCRIPTS_DIR/lib/forwards.sh"
# shellcheck source=scripts/lib/rayjob.sh
source "$SCRIPTS_DIR/lib/rayjob.sh"
load_k8s_settings

KUBE_CONTEXT="" HEAD_POD=""
# What names this run's processes in the head pod while they may run (for target_stop).
POD_RUN_MARKER=""

# Printed by the head pod: "RAY_WORKER_CPUS 1 1" = the CPUs of each live node that has any.
# The head offers 0 CPUs (num-cpus: "0"), so only worker pods are listed.
MINIKUBE_RAY_NODES_PY='
import ray
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
cpus = [int(node["Resources"].get("CPU", 0)) for node in ray.nodes()
        if node["Alive"] and node["Resources"].get("CPU", 0) >= 1]
print("RAY_WORKER_CPUS", *cpus)
'

# True when kubectl points at the minikube profile and the RayCluster has a running head pod.
target_available() {
  TARGET_REASON="no RayCluster from ./scripts/install-ray.sh is reachable"
  command -v kubectl >/dev/null 2>&1 || return 1
  local context head
  context="$(current_kube_context)"
  [[ -n "$context" && "$context" == "$MINIKUBE_PROFILE" ]] || return 1
  head="$(ray_head_pod --context "$context" --request-timeout=5s)"
  [[ -n "$head" ]] || return 1
  TARGET_REASON="kube-context $context has RayCluster $RAY_CLUSTER_NAME (head pod $head)"
}

# The cluster this target uses.
target_settings() {
  log "Cluster: RayCluster $RAY_CLUSTER_NAME (namespace $RAY_NAMESPACE) of kube-context $MINIKUBE_PROFILE"
}

# Fail before touching the cluster when the recipe is bigger than the pods hold.
target_benchmark_check() {
  require_recipe_fits_pods
}

# Ask Ray which worker nodes have joined and how many CPUs each offers; decide the workers and
# their CPUs from what was given (GIVEN_NUM_WORKERS, GIVEN_CPUS_PER_WORKER) and re-resolve
# the recipe with them. The default CPUs: the smallest worker, so one training worker fits
# on every pod.
resolve_pod_workers() {
  local output line cpus slots=0 num_workers="${GIVEN_NUM_WORKERS:-}" cpus_per_worker="${GIVEN_CPUS_PER_WORKER:-}"
  local -a worker_cpus=()
  output="$(minikube_exec_head "$KUBE_CONTEXT" "$HEAD_POD" python -c "$MINIKUBE_RAY_NODES_PY")" ||
    die "Could not ask Ray for its nodes in pod '$HEAD_POD' (output above). Is Ray running? 'kubectl logs -n $RAY_NAMESPACE $HEAD_POD'"
  line="$(grep '^RAY_WORKER_CPUS' <<<"$output" || true)"
  [[ -n "$line" ]] || die "Ray did not report its nodes (pod '$HEAD_POD' printed: $output)."
  read -r -a worker_cpus <<<"${line#RAY_WORKER_CPUS}"
  if ((${#worker_cpus[@]} == 0)); then
    die "No Ray worker has joined the cluster yet (Ray sees no node with CPUs). Check 'kubectl get pods -n $RAY_NAMESPACE -l ray.io/cluster=$RAY_CLUSTER_NAME' and wait for the workers to be Ready, or re-run ./scripts/install-ray.sh."
  fi
  if [[ -z "$cpus_per_worker" ]]; then
    cpus_per_worker="${worker_cpus[0]}"
    for cpus in "${worker_cpus[@]}"; do
      ((cpus >= cpus_per_worker)) || cpus_per_worker="$cpus"
    done
  fi
  for cpus in "${worker_cpus[@]}"; do
    slots=$((slots + cpus / cpus_per_worker))
  done
  if ((slots == 0)); then
    die "CPUS_PER_WORKER=$cpus_per_worker does not fit: Ray's ${#worker_cpus[@]} worker pod(s) have (${worker_cpus[*]}) CPUs each. Lower CPUS_PER_WORKER, or raise the workers' CPUs (limits and num-cpus) in k8s/ray-cluster.yaml and re-run ./scripts/install-ray.sh."
  fi
  [[ -n "$num_workers" ]] || num_workers="$slots"
  if ((num_workers > slots)); then
    die "NUM_WORKERS=$num_workers x CPUS_PER_WORKER=$cpus_per_worker does not fit: Ray has ${#worker_cpus[@]} worker pod(s) with CPUs (${worker_cpus[*]}), room for $slots such worker(s). Lower NUM_WORKERS or CPUS_PER_WORKER, or raise 'replicas' in k8s/ray-cluster.yaml (at most maxReplicas: 3) and re-run ./scripts/install-ray.sh."
  fi
  log "Ray sees ${#worker_cpus[@]} worker pod(s) with CPUs (${worker_cpus[*]}); running $num_workers worker(s) x $cpus_per_worker CPU(s)."
  resolve_recipe "$MODE" "NUM_WORKERS=$num_workers" "CPUS_PER_WORKER=$cpus_per_worker"
}

# Run the baseline, the Ray training, the comparison and the report in the head pod; copy the
# run folder back into RESULTS_DIR. Checkpoints (CHECKPOINT=1, RESUME=1) go to the store.
target_benchmark() {
  local -a storage=()
  connect_to_head
  checkpoint_flags
  if ((${#CHECKPOINT_FLAGS[@]} > 0)); then
    require_k8s_checkpoint_storage "$KUBE_CONTEXT" "$HEAD_POD"
    prune_checkpoint_runs "$KUBE_CONTEXT" "$HEAD_POD"
    storage=(--storage-path "$K8S_CHECKPOINT_PATH")
    log "Checkpoints every epoch in $K8S_CHECKPOINT_PATH (the in-cluster store)$([[ "${RESUME:-0}" == 0 ]] || echo "; resuming the latest interrupted run")."
  fi
  resolve_pod_workers
  # A folder of its own per run; its path, in every command line, names this run's processes.
  local pod_dir
  pod_dir="$POD_RESULTS_ROOT/run-$(date +%Y%m%d-%H%M%S)-$$"
  POD_RUN_MARKER="--results-dir $pod_dir"
  log "1/4 Baseline in the head pod: one process, $CPUS_PER_WORKER CPU(s), the global batch of $NUM_WORKERS worker(s)."
  training_args baseline "$pod_dir"
  minikube_exec_head "$KUBE_CONTEXT" "$HEAD_POD" python "${TRAINING_ARGS[@]}" ||
    die "The baseline failed in pod '$HEAD_POD' (output above)."
  log "2/4 Ray training: $NUM_WORKERS worker(s) x $CPUS_PER_WORKER CPU(s), batch $BATCH_SIZE per worker."
  training_args ray "$pod_dir" ${CHECKPOINT_FLAGS[@]+"${CHECKPOINT_FLAGS[@]}"} --address auto ${storage[@]+"${storage[@]}"}
  minikube_exec_head "$KUBE_CONTEXT" "$HEAD_POD" python "${TRAINING_ARGS[@]}" ||
    die "Ray training failed in pod '$HEAD_POD' (output above). Worker logs: kubectl logs -n $RAY_NAMESPACE -l ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=worker"
  log "3/4 Comparison:"
  minikube_exec_head "$KUBE_CONTEXT" "$HEAD_POD" python -m analysis.compare --results-dir "$pod_dir" --num-workers "$NUM_WORKERS" ||
    die "The comparison failed in pod '$HEAD_POD' (output above)."
  log "4/4 Report (REPORT.md and plots, written in the pod):"
  minikube_exec_head "$KUBE_CONTEXT" "$HEAD_POD" python -m analysis.report --run-dir "$pod_dir" ||
    die "The report could not be written in pod '$HEAD_POD' (output above); the JSON results are in $HEAD_POD:$pod_dir."
  POD_RUN_MARKER=""
  copy_results_from_head "$KUBE_CONTEXT" "$HEAD_POD" "$pod_dir" "$RESULTS_DIR" baseline_results.json \
    "ray_results_${NUM_WORKERS}workers.json" comparison.json REPORT.md
}

# run-tune.sh: the benchmark's check (the recipe against the pods' memory).
target_tune_check() {
  target_benchmark_check
}

# run-tune.sh: the search and TUNE.md in the head pod, as `kubectl exec`; the folder copied back.
target_tune() {
  connect_to_head
  resolve_pod_workers
  local pod_dir
  pod_dir="$POD_RESULTS_ROOT/tune-run-$(date +%Y%m%d-%H%M%S)-$$"
  POD_RUN_MARKER="--results-dir $pod_dir"
  tune_args "$pod_dir" --address auto
  minikube_exec_head "$KUBE_CONTEXT" "$HEAD_POD" python "${TRAINING_ARGS[@]}" ||
    die "The search failed in pod '$HEAD_POD' (output above); $HEAD_POD:$pod_dir/tune_results.json says how far it got."
  minikube_exec_head "$KUBE_CONTEXT" "$HEAD_POD" python -m analysis.tune_report --run-dir "$pod_dir" ||
    die "TUNE.md could not be written in pod '$HEAD_POD' (output above)."
  POD_RUN_MARKER=""
  copy_results_from_head "$KUBE_CONTEXT" "$HEAD_POD" "$pod_dir" "$RESULTS_DIR" tune_results.json TUNE.md
}

# Chaos: the run's checkpoints live in the in-cluster store, its results in the head pod.
target_chaos_check() {
  require_recipe_fits_pods
  RUN_LOCATION="$K8S_CHECKPOINT_PATH/$RUN_NAME"
  POD_RESULTS_DIR="$POD_RESULTS_ROOT/$RUN_NAME"
}

# Chaos: find the head pod and check the run can keep checkpoints in the store.
target_chaos_start() {
  connect_to_head "'CHECKPOINTS=1 ./scripts/install-ray.sh'"
  require_k8s_checkpoint_storage "$KUBE_CONTEXT" "$HEAD_POD"
  prune_checkpoint_runs "$KUBE_CONTEXT" "$HEAD_POD"
}

# Chaos: the Ray run in the head pod, in the background, with FLAGs. Not through a function:
# a backgrounded function is a subshell, and TRAIN_PID must be kubectl itself. The head pod
# has its own data (synthetic, or the image's CIFAR-10 cache), not DATA_DIR.
target_chaos_train() {
  training_args ray "$POD_RESULTS_DIR" --address auto --storage-path "$K8S_CHECKPOINT_PATH" "$@"
  POD_RUN_MARKER="--run-name $RUN_NAME"
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" exec "$HEAD_POD" -c ray-head -- \
    python "${TRAINING_ARGS[@]}" &
  TRAIN_PID=$!
}

# `python ARGS` in the head pod.
target_python() {
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" exec "$HEAD_POD" -c ray-head -- python "$@"
}

# Chaos: the worker pod that is Ray node NODE (Ray knows its IP, Kubernetes its name), in
# CHAOS_VICTIM, and how it is killed, in CHAOS_HOW.
target_chaos_victim() {
  local node="$1" ip
  ip="$(target_python -m tools.chaos node-ip "$node" 2>/dev/null | tail -n 1)" || true
  [[ "$ip" =~ ^[0-9a-fA-F.:]+$ ]] ||
    die "Ray does not know a live node ${node:0:8} (it printed '$ip'); the worker may have died on its own. See the training output above."
  CHAOS_VICTIM="$(kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" get pods \
    --selector "ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=worker" \
    --field-selector "status.podIP=$ip" --output 'jsonpath={.items[0].metadata.name}' 2>/dev/null || true)"
  [[ -n "$CHAOS_VICTIM" ]] ||
    die "No worker pod of RayCluster '$RAY_CLUSTER_NAME' has IP $ip (Ray node ${node:0:8}). Check 'kubectl get pods -o wide -n $RAY_NAMESPACE'."
  CHAOS_HOW="kubectl delete pod $CHAOS_VICTIM (KubeRay creates a new worker pod)"
}

# Chaos: delete the victim's pod.
target_chaos_kill() {
  local node="$1"
  log "CHAOS: epoch $KILL_AFTER_EPOCH is checkpointed; deleting pod $CHAOS_VICTIM, which runs worker rank $KILL_RANK (Ray node ${node:0:8})"
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" delete pod "$CHAOS_VICTIM" --wait=false ||
    die "Could not delete pod $CHAOS_VICTIM (see above)."
  log "CHAOS: pod deleted. Watch KubeRay create a new worker pod, and Ray Train restart the worker group and resume from epoch $KILL_AFTER_EPOCH."
}

# Chaos: the recovery report, read in the pod; the results file is copied back.
target_chaos_finish() {
  local file="$1"
  POD_RUN_MARKER=""
  target_python -m tools.chaos report "$POD_RESULTS_DIR/$file" ||
    die "Could not read the results in pod $HEAD_POD (see above)."
  kubectl --context "$KUBE_CONTEXT" cp -c ray-head "$RAY_NAMESPACE/$HEAD_POD:$POD_RESULTS_DIR/$file" "$RESULTS_DIR/$file" ||
    die "Could not copy $POD_RESULTS_DIR/$file from pod $HEAD_POD to $RESULTS_DIR."
  log "Results copied to $RESULTS_DIR/$file"
}

# The Ray dashboard (and Grafana and Prometheus when installed), forwarded until Ctrl-C.
target_open_dashboard() {
  require_tool kubectl "https://kubernetes.io/docs/tasks/tools/"
  require_minikube_context
  KUBE_CONTEXT="$(current_kube_context)"
  open_forwards
}

# The benchmark as a RayJob (scripts/lib/rayjob.sh).
target_run_rayjob() {
  run_rayjob
}

# For EXIT traps: stop this run's processes in the head pod (ending `kubectl exec` does not
# end them, and the next run would find the CPUs busy), the forwards, and an active RayJob.
target_stop() {
  if [[ -n "$POD_RUN_MARKER" ]]; then
    local marker="$POD_RUN_MARKER"
    POD_RUN_MARKER=""
    stop_pod_processes "$KUBE_CONTEXT" "$HEAD_POD" ray-head "$marker"
  fi
  stop_forwards
  stop_rayjob
}
