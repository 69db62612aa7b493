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
#   TARGET=rehearsal: the Minikube pods rehearsed on this machine (maintainers, Linux, root;
#                 scripts/experiments/rehearse-pods.sh); the worker's pod has its network cut
#                 (its veth down) and lives on, unreachable; SPARE_NODES spare pods take over.
#
# Usage: ./scripts/experiments/chaos.sh [--help]
#   TARGET=local         local, minikube, rehearsal or auto (scripts/targets/)
#   RECIPE: the training recipe (lesson/recipe.py); MAX_FAILURES must be at least 1 here:
#   SPARE_NODES=1        extra 1-worker nodes: a killed node does not come back, so the new
#                        worker group needs one (local and rehearsal; on minikube KubeRay recreates the pod)
#   KILL_AFTER_EPOCH=1   kill once this epoch's checkpoint is registered (1 to EPOCHS-1)
#   KILL_DELAY=0         seconds to wait after that checkpoint before the kill
#   KILL_RANK=1          kill the node that runs this worker rank (0 is the chief)
#   DATA_DIR=.data       CIFAR-10 cache (local)
#   RESULTS_DIR=results/chaos   where the results JSON goes (minikube: copied back there)
#   CHECKPOINT_DIR=checkpoints  local: storage every node reaches, the run's checkpoints and
#                        status (minikube: K8S_CHECKPOINT_PATH=s3://ray-checkpoints/runs)
#   ALLOW_OVERSUBSCRIBE=0  1: let NUM_WORKERS x CPUS_PER_WORKER exceed this machine's cores
#                        (local target; refused otherwise; the spare node is not counted)
#   RAY_PORT=6381        head port of the demo's local cluster (not run-benchmark.sh's 6380)
#   DASHBOARD_PORT=8266  dashboard port of the demo's local cluster
#   CLUSTER_DIR=/tmp/ray-demo-RAY_PORT  the local cluster's state
#   WAIT_TIMEOUT=900     fail when the epoch's checkpoint is not registered within this many seconds
#   KEEP_RUNS=5          minikube: runs the checkpoint store keeps (older ones are deleted first)
#
# The local cluster it starts is stopped on every exit, Ctrl-C included; on minikube an
# interrupt also stops the training in the head pod.
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=scripts/lib/venv.sh
source "$SCRIPTS_DIR/lib/venv.sh"
# shellcheck source=scripts/lib/recipe.sh
source "$SCRIPTS_DIR/lib/recipe.sh"
# shellcheck source=scripts/lib/run_dir.sh
source "$SCRIPTS_DIR/lib/run_dir.sh"
# shellcheck source=scripts/lib/targets.sh
source "$SCRIPTS_DIR/lib/targets.sh"

TARGET="${TARGET:-local}"
SPARE_NODES="${SPARE_NODES:-1}"
KILL_AFTER_EPOCH="${KILL_AFTER_EPOCH:-1}"
KILL_DELAY="${KILL_DELAY:-0}"
KILL_RANK="${KILL_RANK:-1}"
DATA_DIR="${DATA_DIR:-$REPO_ROOT/.data}"
RESULTS_DIR="${RESULTS_DIR:-$REPO_ROOT/results/chaos}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-$REPO_ROOT/checkpoints}"
RAY_PORT="${RAY_PORT:-6381}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8266}"
CLUSTER_DIR="${CLUSTER_DIR:-/tmp/ray-demo-${RAY_PORT}}"
WAIT_TIMEOUT="${WAIT_TIMEOUT:-900}"
RUN_NAME="chaos-$(date +%Y%m%d-%H%M%S)-$$"
TRAIN_PID=""
# Where the run lives (its checkpoints and status), set by the target: CHECKPOINT_DIR/RUN_NAME
# locally, K8S_CHECKPOINT_PATH/RUN_NAME on minikube.
RUN_LOCATION=""

# Validate every setting before anything starts.
check_settings() {
  resolve_recipe default
  require_non_negative_int SPARE_NODES "$SPARE_NODES"
  require_positive_int KILL_AFTER_EPOCH "$KILL_AFTER_EPOCH"
  require_non_negative_int KILL_DELAY "$KILL_DELAY"
  require_non_negative_int KILL_RANK "$KILL_RANK"
  require_positive_int MAX_FAILURES "$MAX_FAILURES"
  require_port RAY_PORT "$RAY_PORT"
  require_port DASHBOARD_PORT "$DASHBOARD_PORT"
  require_positive_int WAIT_TIMEOUT "$WAIT_TIMEOUT"
  ((10#$KILL_AFTER_EPOCH < 10#$EPOCHS)) ||
    die "KILL_AFTER_EPOCH ($KILL_AFTER_EPOCH) must be less than EPOCHS ($EPOCHS): after the last epoch there is nothing left to recover. Lower KILL_AFTER_EPOCH or raise EPOCHS."
  ((10#$KILL_RANK < 10#$NUM_WORKERS)) ||
    die "KILL_RANK ($KILL_RANK) must name a worker rank, 0 to $((NUM_WORKERS - 1)). Lower KILL_RANK or raise NUM_WORKERS."
  require_writable_dir RESULTS_DIR "$RESULTS_DIR"
  load_target
  target_chaos_check
}

# Print the effective settings.
print_settings() {
  log "Settings: TARGET=$TARGET NUM_WORKERS=$NUM_WORKERS SPARE_NODES=$SPARE_NODES CPUS_PER_WORKER=$CPUS_PER_WORKER EPOCHS=$EPOCHS KILL_AFTER_EPOCH=$KILL_AFTER_EPOCH KILL_DELAY=$KILL_DELAY KILL_RANK=$KILL_RANK MAX_FAILURES=$MAX_FAILURES BATCH_SIZE=$BATCH_SIZE DATASET=$DATASET TRAIN_SIZE=$TRAIN_SIZE TEST_SIZE=$TEST_SIZE"
  target_settings
  log "Run '$RUN_NAME' in $RUN_LOCATION; results in $RESULTS_DIR"
}

# Stop the training and what the target started (runs on every exit).
cleanup() {
  local status=$?
  ignore_interrupts
  # The training runs in the background: it is the step to stop first.
  STEP_PID="$TRAIN_PID"
  stop_step
  target_stop
  exit "$status"
}

# Wait until Ray Train registered the checkpoint of KILL_AFTER_EPOCH; print the victim's node ID.
wait_for_checkpoint() {
  local deadline=$((SECONDS + WAIT_TIMEOUT)) epoch node
  while ((SECONDS < deadline)); do
    kill -0 "$TRAIN_PID" 2>/dev/null || die "The training ended before epoch $KILL_AFTER_EPOCH was checkpointed (see above)."
    read -r epoch node < <(target_python -m tools.chaos progress "$RUN_LOCATION" "$KILL_RANK" 2>/dev/null |
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

# Kill the node that runs worker KILL_RANK, and note when, for the recovery timeline.
kill_worker_node() {
  local node="$1"
  target_chaos_victim "$node"
  if ((KILL_DELAY > 0)); then
    log "Waiting ${KILL_DELAY}s into epoch $((KILL_AFTER_EPOCH + 1))"
    sleep "$KILL_DELAY"
  fi
  target_python -m tools.chaos mark-failure "$RUN_LOCATION" "$node" "$KILL_RANK" "$KILL_AFTER_EPOCH" "$CHAOS_HOW" ||
    die "Could not note the failure in $RUN_LOCATION (see above)."
  target_chaos_kill "$node"
}

# Wait for the run, then explain its recovery from the results JSON.
finish() {
  local status=0
  wait "$TRAIN_PID" || status=$?
  TRAIN_PID=""
  ((status == 0)) || die "The training did not recover (exit $status); see above. Its run folder: $RUN_LOCATION"
  log "Recovery:"
  target_chaos_finish "ray_results_${NUM_WORKERS}workers.json"
}

main() {
  local node
  parse_common_flags "$@"
  check_settings
  announce_target
  print_settings
  trap cleanup EXIT
  trap_interrupts
  target_chaos_start
  log "Training: $NUM_WORKERS workers, a checkpoint every epoch, up to $MAX_FAILURES restarts"
  target_chaos_train --checkpoint --run-name "$RUN_NAME"
  node="$(wait_for_checkpoint)"
  kill_worker_node "$node"
  finish
}

main "$@"
