#!/usr/bin/env bash
# A Ray Tune search of the CNN (lesson/ray_tune.py), run four ways on the same CPUs, one after
# the other: trials one at a time on NUM_WORKERS data-parallel workers; NUM_WORKERS trials at a
# time, each a one-worker Ray Train run; the same with plain Keras and no Ray Train; and that
# with ASHA stopping the trailing trials. Then prints and writes TUNE.md: each way's wall time,
# trials per hour, CPU use, best configuration and time to a configuration within 1 point of
# the best. The local target starts a multi-node Ray cluster and stops it, whatever happens;
# the minikube target runs the search in the Ray head pod (scripts/targets/).
#
# Usage: ./scripts/run-tune.sh [--smoke-test] [--help]
#   WAYS=data-parallel,trainer-per-trial,plain,plain-asha   which ways, in this order
#   LEARNING_RATES=5e-4,2e-3      the grid's learning rates
#   GLOBAL_BATCHES=64,128         the grid's global batches (a data-parallel trial splits it
#                                 between its NUM_WORKERS workers)
#   RECIPE: every trial's recipe (lesson/recipe.py); the grid replaces BATCH_SIZE and LEARNING_RATE:
#   TRAIN_SIZE is 2048 here unless set, so that the default search (4 ways of 4 trials) takes minutes.
#   TARGET=auto          where to run (scripts/targets/): minikube when install-ray.sh's
#                        RayCluster answers, else local
#   RESULTS_DIR=results  the run goes into a new RESULTS_DIR/<YYYYmmdd-HHMMSS>-<target>-tune/
#   DATA_DIR=.data       as for run-benchmark.sh
#   RAY_PORT=6380        the local cluster's head port, as for run-benchmark.sh
#   DASHBOARD_PORT=8265  its dashboard's port
#   PIN_CPUS=auto        as for run-benchmark.sh
#   RAY_ADDRESS=         a running cluster to search on instead (left running)
#
# --smoke-test runs the smoke recipe (one epoch of 256 images) through every way. Ctrl-C stops
# the trials and the cluster; tune_results.json in the run folder says how far the search got.
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/venv.sh
source "$SCRIPTS_DIR/lib/venv.sh"
# shellcheck source=scripts/lib/recipe.sh
source "$SCRIPTS_DIR/lib/recipe.sh"
# shellcheck source=scripts/lib/run_dir.sh
source "$SCRIPTS_DIR/lib/run_dir.sh"
# shellcheck source=scripts/lib/targets.sh
source "$SCRIPTS_DIR/lib/targets.sh"

refuse_empty_settings
COMMAND_FLAGS=(--smoke-test MODE=smoke)
TARGET="${TARGET:-auto}"
DATA_DIR="${DATA_DIR:-$REPO_ROOT/.data}"
RESULTS_DIR="${RESULTS_DIR:-$REPO_ROOT/results}"
RAY_PORT="${RAY_PORT:-6380}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
PIN_CPUS="${PIN_CPUS:-auto}"
RUN_DIR=""
INTERRUPTED=""

# The recipe (TRAIN_SIZE 2048 in the default mode unless set) and the cluster's settings; the
# search's lists are checked by lesson/ray_tune.py, in words, before any trial starts.
resolve_settings() {
  resolve_tune_recipe "$MODE"
  require_port RAY_PORT "$RAY_PORT"
  require_port DASHBOARD_PORT "$DASHBOARD_PORT"
  require_one_of PIN_CPUS "$PIN_CPUS" auto 0 1
  require_address RAY_ADDRESS "${RAY_ADDRESS:-}"
  require_writable_dir DATA_DIR "$DATA_DIR"
}

cleanup() {
  local status=$?
  ignore_interrupts
  target_stop
  close_run_dir "$status" "$RUN_DIR" 1
  exit "$status"
}

main() {
  parse_common_flags "$@"
  resolve_settings
  load_target
  announce_target
  log "Settings: WAYS=${WAYS:-(all four)} LEARNING_RATES=${LEARNING_RATES:-(default)} GLOBAL_BATCHES=${GLOBAL_BATCHES:-(default)} NUM_WORKERS=$NUM_WORKERS CPUS_PER_WORKER=$CPUS_PER_WORKER EPOCHS=$EPOCHS TRAIN_SIZE=$TRAIN_SIZE TEST_SIZE=$TEST_SIZE DATASET=$DATASET"
  target_settings
  require_writable_dir RESULTS_DIR "$RESULTS_DIR"
  target_tune_check
  local suffix="$TARGET-tune"
  [[ "$MODE" == default ]] || suffix="$suffix-$MODE"
  new_run_dir "$RESULTS_DIR" "$suffix"
  trap cleanup EXIT
  trap_interrupts
  RESULTS_DIR="$RUN_DIR"
  log "This run's folder: $RUN_DIR"
  target_tune
}

main "$@"
