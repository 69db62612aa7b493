#!/usr/bin/env bash
# Chaos demo: a Ray Train run with a checkpoint every epoch on a local multi-node Ray
# cluster; once the checkpoint of a chosen epoch is registered, one worker node is killed
# (SIGKILL to its raylet and all its processes, like a crashed machine). Ray Train notices,
# restarts the worker group on the nodes left and resumes from that checkpoint; this script
# shows the restart as it happens, then the final results and the time the failure cost.
#
# Usage: ./scripts/chaos.sh [--help]
#   NUM_WORKERS=2        Ray Train workers
#   SPARE_NODES=1        extra 1-worker nodes: a killed node does not come back, so the new
#                        worker group needs one (Kubernetes would recreate the pod instead)
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
#   RESULTS_DIR=results/chaos   where the results JSON goes
#   CHECKPOINT_DIR=checkpoints  storage every node reaches: the run's checkpoints and status
#   RAY_PORT=6381        head port of the demo's cluster (not run-benchmark.sh's 6380)
#   DASHBOARD_PORT=8266  dashboard port of the demo's cluster
#   CLUSTER_DIR=/tmp/ray-demo-RAY_PORT  the cluster's state
#   WAIT_TIMEOUT=900     fail when the epoch's checkpoint is not registered within this many seconds
#
# The cluster it starts is stopped on every exit, Ctrl-C included. Local cluster only.
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NUM_WORKERS="${NUM_WORKERS:-2}"
SPARE_NODES="${SPARE_NODES:-1}"
CPUS_PER_WORKER="${CPUS_PER_WORKER:-1}"
EPOCHS="${EPOCHS:-3}"
KILL_AFTER_EPOCH="${KILL_AFTER_EPOCH:-1}"
KILL_DELAY="${KILL_DELAY:-0}"
KILL_RANK="${KILL_RANK:-1}"
MAX_FAILURES="${MAX_FAILURES:-2}"
BATCH_SIZE="${BATCH_SIZE:-64}"
DATASET="${DATASET:-synthetic}"
TRAIN_SIZE="${TRAIN_SIZE:-4096}"
TEST_SIZE="${TEST_SIZE:-1024}"
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
  require_positive_int NUM_WORKERS "$NUM_WORKERS"
  require_non_negative_int SPARE_NODES "$SPARE_NODES"
  require_positive_int CPUS_PER_WORKER "$CPUS_PER_WORKER"
  require_positive_int EPOCHS "$EPOCHS"
  require_positive_int KILL_AFTER_EPOCH "$KILL_AFTER_EPOCH"
  require_non_negative_int KILL_DELAY "$KILL_DELAY"
  require_non_negative_int KILL_RANK "$KILL_RANK"
  require_positive_int MAX_FAILURES "$MAX_FAILURES"
  require_positive_int BATCH_SIZE "$BATCH_SIZE"
  require_one_of DATASET "$DATASET" synthetic cifar10
  require_positive_int TRAIN_SIZE "$TRAIN_SIZE"
  require_positive_int TEST_SIZE "$TEST_SIZE"
  require_positive_int RAY_PORT "$RAY_PORT"
  require_positive_int DASHBOARD_PORT "$DASHBOARD_PORT"
  require_positive_int WAIT_TIMEOUT "$WAIT_TIMEOUT"
  ((10#$KILL_AFTER_EPOCH < 10#$EPOCHS)) ||
    die "KILL_AFTER_EPOCH ($KILL_AFTER_EPOCH) must be less than EPOCHS ($EPOCHS): after the last epoch there is nothing left to recover. Lower KILL_AFTER_EPOCH or raise EPOCHS."
  ((10#$KILL_RANK < 10#$NUM_WORKERS)) ||
    die "KILL_RANK ($KILL_RANK) must name a worker rank, 0 to $((NUM_WORKERS - 1)). Lower KILL_RANK or raise NUM_WORKERS."
  if ((10#$SPARE_NODES == 0)); then
    warn "SPARE_NODES=0: after the kill the cluster has no room for a new worker group; Ray Train waits for a node that never comes."
  fi
  mkdir -p "$RESULTS_DIR" 2>/dev/null && [[ -w "$RESULTS_DIR" ]] ||
    die "RESULTS_DIR '$RESULTS_DIR' cannot be created or written. Set RESULTS_DIR to a writable folder."
  mkdir -p "$CHECKPOINT_DIR" 2>/dev/null && [[ -w "$CHECKPOINT_DIR" ]] ||
    die "CHECKPOINT_DIR '$CHECKPOINT_DIR' cannot be created or written. Set CHECKPOINT_DIR to a writable folder every node reaches."
  CHECKPOINT_DIR="$(cd "$CHECKPOINT_DIR" && pwd)"
}

# Print the effective settings.
print_settings() {
  log "Settings: NUM_WORKERS=$NUM_WORKERS SPARE_NODES=$SPARE_NODES CPUS_PER_WORKER=$CPUS_PER_WORKER EPOCHS=$EPOCHS KILL_AFTER_EPOCH=$KILL_AFTER_EPOCH KILL_DELAY=$KILL_DELAY KILL_RANK=$KILL_RANK MAX_FAILURES=$MAX_FAILURES BATCH_SIZE=$BATCH_SIZE DATASET=$DATASET TRAIN_SIZE=$TRAIN_SIZE TEST_SIZE=$TEST_SIZE"
  log "Cluster: 127.0.0.1:$RAY_PORT (dashboard port $DASHBOARD_PORT) in $CLUSTER_DIR; run '$RUN_NAME' in $CHECKPOINT_DIR; results in $RESULTS_DIR"
}

# Stop the training and the cluster this script started (runs on every exit).
cleanup() {
  local status=$?
  if [[ -n "$TRAIN_PID" ]] && kill -0 "$TRAIN_PID" 2>/dev/null; then
    kill -TERM "$TRAIN_PID" 2>/dev/null || true
    wait "$TRAIN_PID" 2>/dev/null || true
  fi
  stop_started_cluster
  exit "$status"
}

# Start the Ray run with checkpoints in the background; its output goes to this terminal.
start_training() {
  log "Training: $NUM_WORKERS workers, a checkpoint every epoch, up to $MAX_FAILURES restarts"
  "$VENV_PYTHON" -m training.ray_training --dataset "$DATASET" --train-size "$TRAIN_SIZE" \
    --test-size "$TEST_SIZE" --epochs "$EPOCHS" --batch-size "$BATCH_SIZE" --data-dir "$DATA_DIR" \
    --results-dir "$RESULTS_DIR" --num-workers "$NUM_WORKERS" --cpus-per-worker "$CPUS_PER_WORKER" \
    --address "$RAY_ADDRESS" --checkpoint --storage-path "$CHECKPOINT_DIR" --run-name "$RUN_NAME" \
    --max-failures "$MAX_FAILURES" &
  TRAIN_PID=$!
}

# Wait until Ray Train registered the checkpoint of KILL_AFTER_EPOCH; print the victim's node ID.
wait_for_checkpoint() {
  local deadline=$((SECONDS + WAIT_TIMEOUT)) epoch node
  while ((SECONDS < deadline)); do
    kill -0 "$TRAIN_PID" 2>/dev/null || die "The training ended before epoch $KILL_AFTER_EPOCH was checkpointed (see above)."
    read -r epoch node < <("$VENV_PYTHON" -m training.checkpointing progress "$CHECKPOINT_DIR/$RUN_NAME" "$KILL_RANK" ||
      echo "0 -") || true
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
  if ((KILL_DELAY > 0)); then
    log "Waiting ${KILL_DELAY}s into epoch $((KILL_AFTER_EPOCH + 1))"
    sleep "$KILL_DELAY"
  fi
  "$VENV_PYTHON" - "$CHECKPOINT_DIR/$RUN_NAME" "$node" "$KILL_RANK" "$KILL_AFTER_EPOCH" <<'PYTHON'
import os, sys, time
from training import checkpointing, runtime
run_dir, node, rank, epoch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
runtime.write_json_atomic(os.path.join(run_dir, checkpointing.FAILURE_FILE), {
    "time": time.time(), "node_id": node, "rank": rank, "after_epoch": epoch,
    "how": "SIGKILL to the node's raylet and all its processes (scripts/local-cluster.sh kill-node)"})
PYTHON
  log "CHAOS: epoch $KILL_AFTER_EPOCH is checkpointed; killing the node of worker rank $KILL_RANK (${node:0:8})"
  RAY_PORT="$RAY_PORT" CLUSTER_DIR="$CLUSTER_DIR" "$REPO_ROOT/scripts/local-cluster.sh" kill-node "$node"
  log "CHAOS: node killed. Watch Ray Train notice it, restart the worker group and resume from epoch $KILL_AFTER_EPOCH."
}

# Wait for the run, then explain its recovery from the results JSON.
finish() {
  local status=0
  wait "$TRAIN_PID" || status=$?
  TRAIN_PID=""
  ((status == 0)) || die "The training did not recover (exit $status); see above. Its run folder: $CHECKPOINT_DIR/$RUN_NAME"
  log "Recovery:"
  "$VENV_PYTHON" -m training.checkpointing report "$RESULTS_DIR/ray_results_${NUM_WORKERS}workers.json"
}

main() {
  local node
  parse_flags "$@"
  check_settings
  print_settings
  ensure_venv requirements.txt
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  # A spare worker node: a killed node does not come back, and the restarted group needs one.
  start_cluster_nodes "$((NUM_WORKERS + SPARE_NODES))"
  start_training
  node="$(wait_for_checkpoint)"
  kill_worker_node "$node"
  finish
}

main "$@"
