#!/usr/bin/env bash
# The Kubernetes target of run-benchmark.sh: runs the baseline, the Ray training and the
# comparison inside the Ray head pod of the RayCluster that install-ray.sh created, and
# copies the results back. Sourced by run-benchmark.sh after lib.sh; it has no main.
#
# Defines:
#   minikube_target_available  0 when kubectl points at the minikube profile and the
#                              RayCluster has a running head pod; quiet; sets
#                              MINIKUBE_TARGET_REASON on success.
#   run_minikube_target        runs the benchmark; reads NUM_WORKERS (empty = every worker
#                              slot Ray has), CPUS_PER_WORKER (empty = the Ray CPUs of one
#                              worker pod), EPOCHS, BATCH_SIZE (per worker), DATASET,
#                              TRAIN_SIZE, TEST_SIZE, RESULTS_DIR, CHECKPOINT, RESUME,
#                              MAX_FAILURES (defaults 0, 0, and training/settings.py's),
#                              and MINIKUBE_PROFILE,
#                              RAY_NAMESPACE, RAY_CLUSTER_NAME, K8S_CHECKPOINT_PATH (lib.sh).
#   require_k8s_checkpoint_storage CONTEXT HEAD
#                              fails with what to do unless the head pod has the keys
#                              of the checkpoint store of CHECKPOINTS=1 install-ray.sh.
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

# Run the baseline, then Ray training, then the comparison in the head pod; copy results back.
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

  local pod_dir
  pod_dir="$POD_RESULTS_ROOT/run-$(date +%Y%m%d-%H%M%S)"

  # Same global batch as the Ray run, on the CPUs of one Ray worker: a fair baseline.
  log "1/3 Baseline in the head pod: one process, $cpus_per_worker CPU(s), batch $((BATCH_SIZE * num_workers))."
  training_args baseline "$num_workers" "$cpus_per_worker" "$pod_dir"
  minikube_exec_head "$context" "$head" python "${TRAINING_ARGS[@]}" ||
    die "The baseline failed in pod '$head' (output above)."

  log "2/3 Ray training: $num_workers worker(s) x $cpus_per_worker CPU(s), batch $BATCH_SIZE per worker."
  training_args ray "$num_workers" "$cpus_per_worker" "$pod_dir" --address auto \
    ${storage[@]+"${storage[@]}"}
  minikube_exec_head "$context" "$head" python "${TRAINING_ARGS[@]}" ||
    die "Ray training failed in pod '$head' (output above). Worker logs: kubectl logs -n $RAY_NAMESPACE -l ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=worker"

  log "3/3 Comparison:"
  minikube_exec_head "$context" "$head" python -m training.compare \
    --results-dir "$pod_dir" --num-workers "$num_workers" ||
    die "The comparison failed in pod '$head' (output above)."

  mkdir -p "$RESULTS_DIR"
  local file
  for file in baseline_results.json "ray_results_${num_workers}workers.json" comparison.json; do
    kubectl --context "$context" cp -c ray-head "$RAY_NAMESPACE/$head:$pod_dir/$file" "$RESULTS_DIR/$file" ||
      die "Could not copy $pod_dir/$file from pod '$head' to $RESULTS_DIR."
  done
  log "Results copied from $head:$pod_dir to $RESULTS_DIR"
}
