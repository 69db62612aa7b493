#!/usr/bin/env bash
# Chaos demo: a Ray Train run with a checkpoint every epoch; once the checkpoint of a
# chosen epoch is registered, the worker node of one worker is killed. Ray Train notices,
# restarts the worker group and resumes from that checkpoint; this script shows the
# restart as it happens, then the final results and the time the failure cost.
#   TARGET=local: a local multi-node Ray cluster; the node is killed with SIGKILL to its
#                 raylet and all its processes, like a crashed machine, and does not come
#                 back (hence SPARE_NODES).
#   TARGET=minikube: the RayCluster of `CHECKPOINTS=1 ./scripts/install-ray.sh`; the
#                 worker's pod is deleted, KubeRay creates a new one, and the run's
#                 checkpoints live in the in-cluster store (K8S_CHECKPOINT_PATH).
#
# Usage: ./scripts/chaos.sh [--help]
#   TARGET=local         local or minikube
#   NUM_WORKERS=2        Ray Train workers
#   SPARE_NODES=1        extra 1-worker nodes: a killed node does not come back, so the new
#                        worker group needs one (local only: KubeRay recreates the pod)
#   CPUS_PER_WORKER=1    CPUs per worker and per worker node
#   EPOCHS=3             passes over the training set
#   KILL_AFTER_EPOCH=1   kill once this epoch's checkpoint is registered (1 to EPOCHS-1)
#   KILL_DELAY=0         seconds to wait after that checkpoint before the kill
#   KILL_RANK=1          kill the node that runs this worker rank (0 is the chief)
#   MAX_FAILURES=2       worker group restarts Ray Train may make (at least 1 here)
#   BATCH_SIZE=64        batch per worker
#   DATASET=synthetic    synthetic or cifar10
#   TRAIN_SIZE=4096      training examples
#   TEST_SIZE=1024       test examples
#   DATA_DIR=.data       CIFAR-10 cache
#   RESULTS_DIR=results/chaos   where the results JSON goes (minikube: copied back there)
#   CHECKPOINT_DIR=checkpoints  local: storage every node reaches, the run's checkpoints and
#                        status (minikube: K8S_CHECKPOINT_PATH=s3://ray-checkpoints/runs)
#   RAY_PORT=6381        head port of the demo's local cluster (not run-benchmark.sh's 6380)
#   DASHBOARD_PORT=8266  dashboard port of the demo's local cluster
#   CLUSTER_DIR=/tmp/ray-demo-RAY_PORT  the local cluster's state
#   WAIT_TIMEOUT=900     fail when the epoch's checkpoint is not registered within this many seconds
#   KEEP_RUNS=5          minikube: runs the checkpoint store keeps (older ones are deleted first)
#
# The local cluster it starts is stopped on every exit, Ctrl-C included; on minikube an
# interrupt also stops the training in the head pod.
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGET="${TARGET:-local}"
NUM_WORKERS="${NUM_WORKERS:-}"
SPARE_NODES="${SPARE_NODES:-1}"
CPUS_PER_WORKER="${CPUS_PER_WORKER:-}"
EPOCHS="${EPOCHS:-}"
KILL_AFTER_EPOCH="${KILL_AFTER_EPOCH:-1}"
KILL_DELAY="${KILL_DELAY:-0}"
KILL_RANK="${KILL_RANK:-1}"
MAX_FAILURES="${MAX_FAILURES:-}"
BATCH_SIZE="${BATCH_SIZE:-}"
DATASET="${DATASET:-}"
TRAIN_SIZE="${TRAIN_SIZE:-}"
TEST_SIZE="${TEST_SIZE:-}"
DATA_DIR="${DATA_DIR:-$REPO_ROOT/.data}"
RESULTS_DIR="${RESULTS_DIR:-$REPO_ROOT/results/chaos}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-$REPO_ROOT/checkpoints}"
RAY_PORT="${RAY_PORT:-6381}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8266}"
CLUSTER_DIR="${CLUSTER_DIR:-/tmp/ray-demo-${RAY_PORT}}"
WAIT_TIMEOUT="${WAIT_TIMEOUT:-900}"
# The .venv interpreter; PYTHON (read by ensure_venv) chooses the one that creates .venv.
VENV_PYTHON="$REPO_ROOT/.venv/bin/python"
RUN_NAME="chaos-$(date +%Y%m%d-%H%M%S)-$$"
CLUSTER_STARTED=0
TRAIN_PID=""
# Where the run lives: CHECKPOINT_DIR/RUN_NAME locally, K8S_CHECKPOINT_PATH/RUN_NAME on
# minikube; and (minikube) the kube-context, the head pod and the results folder in it.
RUN_LOCATION=""
KUBE_CONTEXT=""
HEAD_POD=""
POD_RESULTS_DIR=""

# Read the command-line flags (settings are environment variables).
parse_flags() {
  while (($# > 0)); do
    case "$1" in
      -h | --help)
        print_usage
        exit 0
        ;;
      *) die "Unknown argument '$1'. Run $0 --help for the settings (they are environment variables)." ;;
    esac
  done
}

# Validate every setting before anything starts.
check_settings() {
  require_one_of TARGET "$TARGET" local minikube
  resolve_recipe default
  NUM_WORKERS="${NUM_WORKERS:-$DEFAULT_NUM_WORKERS}"
  CPUS_PER_WORKER="${CPUS_PER_WORKER:-$DEFAULT_CPUS_PER_WORKER}"
  MAX_FAILURES="${MAX_FAILURES:-$DEFAULT_MAX_FAILURES}"
  require_positive_int NUM_WORKERS "$NUM_WORKERS"
  require_non_negative_int SPARE_NODES "$SPARE_NODES"
  require_positive_int CPUS_PER_WORKER "$CPUS_PER_WORKER"
  require_positive_int KILL_AFTER_EPOCH "$KILL_AFTER_EPOCH"
  require_non_negative_int KILL_DELAY "$KILL_DELAY"
  require_non_negative_int KILL_RANK "$KILL_RANK"
  require_positive_int MAX_FAILURES "$MAX_FAILURES"
  require_positive_int RAY_PORT "$RAY_PORT"
  require_positive_int DASHBOARD_PORT "$DASHBOARD_PORT"
  require_positive_int WAIT_TIMEOUT "$WAIT_TIMEOUT"
  ((10#$KILL_AFTER_EPOCH < 10#$EPOCHS)) ||
    die "KILL_AFTER_EPOCH ($KILL_AFTER_EPOCH) must be less than EPOCHS ($EPOCHS): after the last epoch there is nothing left to recover. Lower KILL_AFTER_EPOCH or raise EPOCHS."
  ((10#$KILL_RANK < 10#$NUM_WORKERS)) ||
    die "KILL_RANK ($KILL_RANK) must name a worker rank, 0 to $((NUM_WORKERS - 1)). Lower KILL_RANK or raise NUM_WORKERS."
  mkdir -p "$RESULTS_DIR" 2>/dev/null && [[ -w "$RESULTS_DIR" ]] ||
    die "RESULTS_DIR '$RESULTS_DIR' cannot be created or written. Set RESULTS_DIR to a writable folder."
  if [[ "$TARGET" == minikube ]]; then
    load_k8s_settings
    RUN_LOCATION="$K8S_CHECKPOINT_PATH/$RUN_NAME"
    POD_RESULTS_DIR="/tmp/results/$RUN_NAME"
    return 0
  fi
  if ((10#$SPARE_NODES == 0)); then
    warn "SPARE_NODES=0: after the kill the cluster has no room for a new worker group; Ray Train waits for a node that never comes."
  fi
  mkdir -p "$CHECKPOINT_DIR" 2>/dev/null && [[ -w "$CHECKPOINT_DIR" ]] ||
    die "CHECKPOINT_DIR '$CHECKPOINT_DIR' cannot be created or written. Set CHECKPOINT_DIR to a writable folder every node reaches."
  CHECKPOINT_DIR="$(cd "$CHECKPOINT_DIR" && pwd)"
  RUN_LOCATION="$CHECKPOINT_DIR/$RUN_NAME"
}

# Print the effective settings.
print_settings() {
  log "Settings: TARGET=$TARGET NUM_WORKERS=$NUM_WORKERS SPARE_NODES=$SPARE_NODES CPUS_PER_WORKER=$CPUS_PER_WORKER EPOCHS=$EPOCHS KILL_AFTER_EPOCH=$KILL_AFTER_EPOCH KILL_DELAY=$KILL_DELAY KILL_RANK=$KILL_RANK MAX_FAILURES=$MAX_FAILURES BATCH_SIZE=$BATCH_SIZE DATASET=$DATASET TRAIN_SIZE=$TRAIN_SIZE TEST_SIZE=$TEST_SIZE"
  if [[ "$TARGET" == minikube ]]; then
    log "Cluster: RayCluster $RAY_CLUSTER_NAME (namespace $RAY_NAMESPACE) of kube-context $MINIKUBE_PROFILE; run '$RUN_NAME' in $K8S_CHECKPOINT_PATH; results in $RESULTS_DIR"
  else
    log "Cluster: 127.0.0.1:$RAY_PORT (dashboard port $DASHBOARD_PORT) in $CLUSTER_DIR; run '$RUN_NAME' in $CHECKPOINT_DIR; results in $RESULTS_DIR"
  fi
}

# Run `python ARGS` where the cluster is: this machine's .venv, or the Ray head pod
# (CLUSTER_PYTHON is set in main).
cluster_python() {
  "${CLUSTER_PYTHON[@]}" "$@"
}

# Minikube: find the head pod and check the run can keep checkpoints in the store.
connect_to_minikube() {
  require_recipe_fits_pods
  require_tool kubectl "https://kubernetes.io/docs/tasks/tools/"
  require_minikube_context
  KUBE_CONTEXT="$(current_kube_context)"
  HEAD_POD="$(ray_head_pod --context "$KUBE_CONTEXT" --request-timeout=10s)"
  [[ -n "$HEAD_POD" ]] ||
    die "No running Ray head pod of RayCluster '$RAY_CLUSTER_NAME' in namespace '$RAY_NAMESPACE' of context '$KUBE_CONTEXT'. Run 'CHECKPOINTS=1 ./scripts/install-ray.sh' first."
  require_k8s_checkpoint_storage "$KUBE_CONTEXT" "$HEAD_POD"
  log "Ray head pod: $HEAD_POD (context $KUBE_CONTEXT)"
  prune_checkpoint_runs "$KUBE_CONTEXT" "$HEAD_POD"
}

# Stop the training and the cluster this script started (runs on every exit).
cleanup() {
  local status=$?
  if [[ -n "$TRAIN_PID" ]] && kill -0 "$TRAIN_PID" 2>/dev/null; then
    kill -TERM "$TRAIN_PID" 2>/dev/null || true
    wait "$TRAIN_PID" 2>/dev/null || true
    if [[ "$TARGET" == minikube ]]; then
      # Ending `kubectl exec` does not reliably end the process in the pod.
      stop_pod_processes "$KUBE_CONTEXT" "$HEAD_POD" ray-head "--run-name $RUN_NAME"
    fi
  fi
  stop_started_cluster
  exit "$status"
}

# Start the Ray run with checkpoints in the background; its output goes to this terminal.
start_training() {
  local results_dir="$RESULTS_DIR" storage="$CHECKPOINT_DIR" address="${RAY_ADDRESS:-auto}"
  if [[ "$TARGET" == minikube ]]; then
    results_dir="$POD_RESULTS_DIR"
    storage="$K8S_CHECKPOINT_PATH"
  fi
  log "Training: $NUM_WORKERS workers, a checkpoint every epoch, up to $MAX_FAILURES restarts"
  # Not through the cluster_python function: a backgrounded function is a subshell, and
  # TRAIN_PID must be the process itself, so that cleanup can stop it.
  training_args ray "$NUM_WORKERS" "$CPUS_PER_WORKER" "$results_dir" \
    ${DATA_DIR_FLAG[@]+"${DATA_DIR_FLAG[@]}"} --address "$address" --checkpoint --storage-path "$storage" \
    --run-name "$RUN_NAME"
  "${CLUSTER_PYTHON[@]}" "${TRAINING_ARGS[@]}" &
  TRAIN_PID=$!
}

# Wait until Ray Train registered the checkpoint of KILL_AFTER_EPOCH; print the victim's node ID.
wait_for_checkpoint() {
  local deadline=$((SECONDS + WAIT_TIMEOUT)) epoch node
  while ((SECONDS < deadline)); do
    kill -0 "$TRAIN_PID" 2>/dev/null || die "The training ended before epoch $KILL_AFTER_EPOCH was checkpointed (see above)."
    read -r epoch node < <(cluster_python -m tools.chaos progress "$RUN_LOCATION" "$KILL_RANK" 2>/dev/null |
      tail -n 1 || echo "0 -") || true
    [[ "$epoch" =~ ^[0-9]+$ ]] || epoch=0
    if ((epoch >= KILL_AFTER_EPOCH)) && [[ "$node" != "-" ]]; then
      echo "$node"
      return 0
    fi
    sleep 0.5
  done
  die "The checkpoint of epoch $KILL_AFTER_EPOCH was not registered within ${WAIT_TIMEOUT}s. Raise WAIT_TIMEOUT, or see the training output above."
}

# The worker pod that is Ray node NODE_ID (Ray knows the pod's IP, Kubernetes its name).
worker_pod_of_node() {
  local node="$1" ip pod
  ip="$(cluster_python -m tools.chaos node-ip "$node" 2>/dev/null | tail -n 1)" || true
  [[ "$ip" =~ ^[0-9a-fA-F.:]+$ ]] ||
    die "Ray does not know a live node ${node:0:8} (it printed '$ip'); the worker may have died on its own. See the training output above."
  pod="$(kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" get pods \
    --selector "ray.io/cluster=$RAY_CLUSTER_NAME,ray.io/node-type=worker" \
    --field-selector "status.podIP=$ip" --output 'jsonpath={.items[0].metadata.name}' 2>/dev/null || true)"
  [[ -n "$pod" ]] ||
    die "No worker pod of RayCluster '$RAY_CLUSTER_NAME' has IP $ip (Ray node ${node:0:8}). Check 'kubectl get pods -o wide -n $RAY_NAMESPACE'."
  echo "$pod"
}

# Kill the node that runs worker KILL_RANK, and note when, for the recovery timeline.
kill_worker_node() {
  local node="$1" pod="" how
  if [[ "$TARGET" == minikube ]]; then
    pod="$(worker_pod_of_node "$node")"
    how="kubectl delete pod $pod (KubeRay creates a new worker pod)"
  else
    how="SIGKILL to the node's raylet and all its processes (scripts/local-cluster.sh kill-node)"
  fi
  if ((KILL_DELAY > 0)); then
    log "Waiting ${KILL_DELAY}s into epoch $((KILL_AFTER_EPOCH + 1))"
    sleep "$KILL_DELAY"
  fi
  cluster_python -m tools.chaos mark-failure "$RUN_LOCATION" "$node" "$KILL_RANK" \
    "$KILL_AFTER_EPOCH" "$how" ||
    die "Could not note the failure in $RUN_LOCATION (see above)."
  if [[ "$TARGET" == minikube ]]; then
    log "CHAOS: epoch $KILL_AFTER_EPOCH is checkpointed; deleting pod $pod, which runs worker rank $KILL_RANK (Ray node ${node:0:8})"
    kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" delete pod "$pod" --wait=false ||
      die "Could not delete pod $pod (see above)."
    log "CHAOS: pod deleted. Watch KubeRay create a new worker pod, and Ray Train restart the worker group and resume from epoch $KILL_AFTER_EPOCH."
    return 0
  fi
  log "CHAOS: epoch $KILL_AFTER_EPOCH is checkpointed; killing the node of worker rank $KILL_RANK (${node:0:8})"
  RAY_PORT="$RAY_PORT" CLUSTER_DIR="$CLUSTER_DIR" "$REPO_ROOT/scripts/local-cluster.sh" kill-node "$node"
  log "CHAOS: node killed. Watch Ray Train notice it, restart the worker group and resume from epoch $KILL_AFTER_EPOCH."
}

# Wait for the run, then explain its recovery from the results JSON.
finish() {
  local status=0
  wait "$TRAIN_PID" || status=$?
  TRAIN_PID=""
  ((status == 0)) || die "The training did not recover (exit $status); see above. Its run folder: $RUN_LOCATION"
  local file="ray_results_${NUM_WORKERS}workers.json"
  log "Recovery:"
  if [[ "$TARGET" == minikube ]]; then
    minikube_exec_head "$KUBE_CONTEXT" "$HEAD_POD" python -m tools.chaos report "$POD_RESULTS_DIR/$file" ||
      die "Could not read the results in pod $HEAD_POD (see above)."
    kubectl --context "$KUBE_CONTEXT" cp -c ray-head "$RAY_NAMESPACE/$HEAD_POD:$POD_RESULTS_DIR/$file" "$RESULTS_DIR/$file" ||
      die "Could not copy $POD_RESULTS_DIR/$file from pod $HEAD_POD to $RESULTS_DIR."
    log "Results copied to $RESULTS_DIR/$file"
    return 0
  fi
  "$VENV_PYTHON" -m tools.chaos report "$RESULTS_DIR/$file"
}

main() {
  local node
  parse_flags "$@"
  check_settings
  print_settings
  if [[ "$TARGET" == minikube ]]; then
    # The head pod has its own data (synthetic, or the image's CIFAR-10 cache), not DATA_DIR.
    DATA_DIR_FLAG=()
    # shellcheck source=scripts/minikube-target.sh
    source "$REPO_ROOT/scripts/minikube-target.sh"
    connect_to_minikube
    CLUSTER_PYTHON=(kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" exec "$HEAD_POD" -c ray-head -- python)
    trap cleanup EXIT
    trap 'exit 130' INT TERM
  else
    DATA_DIR_FLAG=(--data-dir "$DATA_DIR")
    CLUSTER_PYTHON=("$VENV_PYTHON")
    ensure_venv requirements.txt
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    # A spare worker node: a killed node does not come back, and the restarted group needs one.
    start_cluster_nodes "$((NUM_WORKERS + SPARE_NODES))"
  fi
  start_training
  node="$(wait_for_checkpoint)"
  kill_worker_node "$node"
  finish
}

main "$@"
