#!/usr/bin/env bash
# Measure how much memory each Kubernetes pod of k8s/ray-cluster.yaml needs, on the local
# multi-node Ray cluster: one local Ray node per pod. It runs the baseline, then the Ray
# training, and samples the peak memory of every process that shares a pod on Kubernetes
# (head: GCS, raylet, dashboard and agents, the baseline, the driver; worker: raylet, agents,
# one Ray Train worker). It prints the peaks and the pod sizes with HEADROOM on top; the
# arithmetic in k8s/ray-cluster.yaml comes from its output. Linux only (it reads /proc).
#
# Usage: ./scripts/experiments/measure-pod-memory.sh [--smoke-test | --full] [--help]
#   RECIPE: the training recipe (lesson/recipe.py), one local worker node per worker (as one per pod):
#   MAX_PHASE_SECONDS=0   stop the baseline and the Ray run this long after each starts
#                         (0: run both to the end); the memory plateaus during the first
#                         epoch, so a bounded CIFAR-10-size run is enough
#   HEADROOM=25           percent added to each pod's peak
#   RESULTS_DIR=results/pod-memory  writes a new <date-time> folder there: the JSON of each
#                         phase, memory.json (the summary) and output.txt (what was printed)
#   RAY_PORT=6382         head port of this script's own local cluster
#   DASHBOARD_PORT=8267   its dashboard port
#   CLUSTER_DIR=/tmp/ray-demo-RAY_PORT  its state
# CIFAR-10 size without a download: DATASET=synthetic TRAIN_SIZE=50000 TEST_SIZE=10000 EPOCHS=1
# (the same 50,000 x 32x32x3 float32 in memory as --full).
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
# shellcheck source=scripts/lib/venv.sh
source "$SCRIPTS_DIR/lib/venv.sh"
# shellcheck source=scripts/lib/recipe.sh
source "$SCRIPTS_DIR/lib/recipe.sh"
# shellcheck source=scripts/lib/cluster.sh
source "$SCRIPTS_DIR/lib/cluster.sh"
# shellcheck source=scripts/lib/run_dir.sh
source "$SCRIPTS_DIR/lib/run_dir.sh"

COMMAND_FLAGS=("${MODE_FLAGS[@]}")
# One CPU per worker, as the worker pods of k8s/ray-cluster.yaml have.
CPUS_PER_WORKER=1
MAX_PHASE_SECONDS="${MAX_PHASE_SECONDS:-0}"
HEADROOM="${HEADROOM:-25}"
RESULTS_DIR="${RESULTS_DIR:-$REPO_ROOT/results/pod-memory}"
RAY_PORT="${RAY_PORT:-6382}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8267}"
CLUSTER_DIR="${CLUSTER_DIR:-/tmp/ray-demo-${RAY_PORT}}"
VENV_PYTHON="$REPO_ROOT/.venv/bin/python"
SAMPLER=(-m tools.pod_memory)
CLUSTER_STARTED=0
SAMPLER_PID=""
RUN_DIR=""

# Stop the sampler and the cluster however the script ends.
cleanup() {
  local status=$?
  [[ -z "$SAMPLER_PID" ]] || kill -TERM "$SAMPLER_PID" 2>/dev/null || true
  stop_started_cluster
  exit "$status"
}

# Run one phase (baseline or ray) with the sampler watching the cluster's processes.
measure_phase() {
  local phase="$1" status=0
  shift
  log "Phase '$phase'$( ((MAX_PHASE_SECONDS > 0)) && echo ", stopped after ${MAX_PHASE_SECONDS}s"): $*"
  "$VENV_PYTHON" "${SAMPLER[@]}" sample --cluster-dir "$CLUSTER_DIR" --phase "$phase" \
    --out "$RUN_DIR/$phase.json" &
  SAMPLER_PID=$!
  if ((MAX_PHASE_SECONDS > 0)); then
    # SIGINT, as Ctrl-C: the Ray run then stops its workers before it exits.
    timeout -s INT -k 60 "$MAX_PHASE_SECONDS" "$@" || status=$?
    ((status == 0 || status == 124)) || die "The $phase phase failed (exit $status; output above)."
  else
    "$@" || die "The $phase phase failed (output above)."
  fi
  kill -TERM "$SAMPLER_PID"
  wait "$SAMPLER_PID" || die "The memory sampler failed (output above)."
  SAMPLER_PID=""
}

main() {
  parse_common_flags "$@"
  resolve_recipe "$MODE"
  require_non_negative_int MAX_PHASE_SECONDS "$MAX_PHASE_SECONDS"
  require_non_negative_int HEADROOM "$HEADROOM"
  [[ -d /proc/self ]] || die "This measurement reads /proc, so it needs Linux. Run it on a Linux machine or VM."
  if ((MAX_PHASE_SECONDS > 0)); then
    require_tool timeout "GNU coreutils (MAX_PHASE_SECONDS needs it)"
  fi
  local recipe_text="DATASET=$DATASET TRAIN_SIZE=$TRAIN_SIZE TEST_SIZE=$TEST_SIZE EPOCHS=$EPOCHS BATCH_SIZE=$BATCH_SIZE NUM_WORKERS=$NUM_WORKERS"
  log "Settings: $recipe_text MAX_PHASE_SECONDS=$MAX_PHASE_SECONDS HEADROOM=$HEADROOM RAY_PORT=$RAY_PORT CLUSTER_DIR=$CLUSTER_DIR"
  ensure_venv requirements.txt
  new_run_dir "$RESULTS_DIR" "$MODE"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  start_cluster_nodes "$NUM_WORKERS"
  # The training processes carry the cluster's marker too, so the sampler finds them.
  export RAY_DEMO_CLUSTER_DIR="$CLUSTER_DIR"

  training_args baseline "$RUN_DIR/training"
  measure_phase baseline "$VENV_PYTHON" "${TRAINING_ARGS[@]}"
  training_args ray "$RUN_DIR/training" --address "$RAY_ADDRESS"
  measure_phase ray "$VENV_PYTHON" "${TRAINING_ARGS[@]}"

  local -a bounded=()
  ((MAX_PHASE_SECONDS == 0)) || bounded=(--bounded)
  "$VENV_PYTHON" "${SAMPLER[@]}" report --headroom "$HEADROOM" \
    --recipe "$recipe_text$( ((MAX_PHASE_SECONDS == 0)) || echo ", each phase stopped after ${MAX_PHASE_SECONDS}s")" \
    ${bounded[@]+"${bounded[@]}"} --out "$RUN_DIR/memory.json" "$RUN_DIR/baseline.json" "$RUN_DIR/ray.json" |
    tee "$RUN_DIR/output.txt"
  log "Written: $RUN_DIR/memory.json and $RUN_DIR/output.txt"
}

main "$@"
