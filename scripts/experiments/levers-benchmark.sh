#!/usr/bin/env bash
# Measure, side by side in one run on one local cluster, what might bring 2 Ray workers
# closer to 2x the baseline: the physical ceiling of the machine (two plain Keras processes
# at once, each on its own core), what the step timing costs, compressed gradients in the
# all-reduce, and larger per-worker batches with the learning rate scaled. Then prints and
# writes LEVERS.md: throughput, the per-step breakdown and accuracy of every row.
#
# Usage: ./scripts/experiments/levers-benchmark.sh [--smoke-test] [--dry-run] [--help]
#   ROWS="baseline ceiling tensorflow-alone ray stock-step bfloat16 float16 batch-128 batch-256"
#                        which rows to run, in this order (all by default):
#                        baseline    plain Keras, 1 CPU, global batch BATCH_SIZE x 2
#                        ceiling     two such baselines at once, each pinned to its own core
#                        tensorflow-alone  the Ray row's training as 2 plain processes,
#                                    TF_CONFIG by hand, no Ray (harness/tensorflow_alone.py)
#                        ray         Ray Train, 2 workers x 1 CPU (the default recipe)
#                        stock-step  the same with Keras' stock training step (no timing)
#                        bfloat16    the same with the all-reduce in bfloat16
#                                    (DEMO_ALLREDUCE_DTYPE=bfloat16 reaches the workers)
#                        float16     the same with the all-reduce in float16
#                        batch-128   128 per worker, learning rate scaled, warm-up epoch
#                        batch-256   256 per worker, learning rate scaled, warm-up epoch
#   RECIPE: the training recipe (lesson/recipe.py), with 2 workers of 1 CPU each:
#   With --smoke-test the training set has 512 examples: the batch-256 row needs that many.
#   RESULTS_DIR=results  the run goes into a new RESULTS_DIR/<YYYYmmdd-HHMMSS>-levers/
#   RAY_PORT=6380        head port of its local cluster
#   DASHBOARD_PORT=8265  dashboard port of its local cluster
#
# Needs 2 cores or more and taskset (util-linux) for the ceiling row. The default rows take
# tens of minutes on a 2-core machine (the committed run: docs/results/levers/); --dry-run
# prints the plan and starts nothing.
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

ALL_ROWS="baseline ceiling tensorflow-alone ray stock-step bfloat16 float16 batch-128 batch-256"
COMMAND_FLAGS=(--smoke-test MODE=smoke --dry-run DRY_RUN=1)
DRY_RUN=0
ROWS="${ROWS:-$ALL_ROWS}"
TRAIN_SIZE="${TRAIN_SIZE:-}"
DATA_DIR="${DATA_DIR:-$REPO_ROOT/.data}"
RESULTS_DIR="${RESULTS_DIR:-$REPO_ROOT/results}"
RAY_PORT="${RAY_PORT:-6380}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
# The rows compare 2 workers of 1 CPU each with the baseline; the recipe gets them.
WORKERS=2
CPUS_PER_WORKER=1
VENV_PYTHON="$REPO_ROOT/.venv/bin/python"
RUN_DIR=""
SIDE_PID=""
INTERRUPTED=""
CLUSTER_STARTED=0

# Fill in the defaults and check every setting.
resolve_settings() {
  # The batch-256 row needs a global batch of 512 examples per step.
  [[ "$MODE" != smoke ]] || TRAIN_SIZE="${TRAIN_SIZE:-512}"
  resolve_recipe "$MODE" "NUM_WORKERS=$WORKERS" "CPUS_PER_WORKER=$CPUS_PER_WORKER"
  require_port RAY_PORT "$RAY_PORT"
  require_port DASHBOARD_PORT "$DASHBOARD_PORT"
  local row
  [[ -n "${ROWS// /}" ]] || die "ROWS is empty: name rows to run, e.g. ROWS=\"baseline ray\"."
  for row in $ROWS; do
    # shellcheck disable=SC2086 # the list of row names is split into words on purpose
    require_one_of ROWS "$row" $ALL_ROWS
  done
  if [[ " $ROWS " == *" ceiling "* ]]; then
    command -v taskset >/dev/null 2>&1 || die "The ceiling row pins two processes to two cores and needs taskset (util-linux). Leave 'ceiling' out of ROWS on this machine."
    (($(getconf _NPROCESSORS_ONLN) >= 2)) || die "The ceiling row needs 2 cores. Leave 'ceiling' out of ROWS on this machine."
  fi
}

# Print the plan.
print_plan() {
  log "Settings: ROWS=\"$ROWS\" EPOCHS=$EPOCHS BATCH_SIZE=$BATCH_SIZE (per worker) DATASET=$DATASET TRAIN_SIZE=$TRAIN_SIZE TEST_SIZE=$TEST_SIZE RESULTS_DIR=$RESULTS_DIR"
  log "Cluster: 127.0.0.1:$RAY_PORT, a head and $WORKERS worker nodes of $CPUS_PER_WORKER CPU, pinned to cores 0 and 1"
}

# Stop the cluster and mark the run folder (runs on every exit).
cleanup() {
  local status=$?
  ignore_interrupts
  # The ceiling row's other baseline, when a signal came while both ran.
  STEP_PID="$SIDE_PID"
  stop_step
  stop_started_cluster
  close_run_dir "$status" "$RUN_DIR" 1
  exit "$status"
}

# Plain Keras with the global batch of the Ray row, into FOLDER, pinned to CORE.
baseline() {
  local folder="$1" core="$2"
  training_args baseline "$folder" --data-dir "$DATA_DIR"
  run_step taskset -c "$core" "$VENV_PYTHON" "${TRAINING_ARGS[@]}"
}

# Ray Train with 2 workers into FOLDER, with the recipe's NAME=VALUE overrides (the next row
# gets the recipe unchanged). Not a subshell: the signal traps must see the step it runs.
ray_row() {
  local folder="$1" name
  shift
  local -a kept=()
  for name in $RECIPE_NAMES; do kept+=("$name=${!name}"); done
  local -a kept_flags=("${RECIPE_FLAGS[@]}")
  (($# == 0)) || resolve_recipe "$MODE" "$@"
  training_args ray "$folder" --data-dir "$DATA_DIR" --address "$RAY_ADDRESS"
  for name in "${kept[@]}"; do printf -v "${name%%=*}" '%s' "${name#*=}"; done
  RECIPE_FLAGS=("${kept_flags[@]}")
  run_step "$VENV_PYTHON" "${TRAINING_ARGS[@]}"
}

# One row into RUN_DIR/ROW.
run_row() {
  local row="$1" folder="$RUN_DIR/$1"
  log "Row $row -> $folder"
  case "$row" in
    baseline) baseline "$folder" 0 ;;
    ceiling)
      # Both at once, each on its own core: what two independent processes reach together.
      training_args baseline "$folder/core-0" --data-dir "$DATA_DIR"
      taskset -c 0 "$VENV_PYTHON" "${TRAINING_ARGS[@]}" &
      SIDE_PID=$!
      baseline "$folder/core-1" 1 || { wait "$SIDE_PID" || true; return 1; }
      wait "$SIDE_PID"
      SIDE_PID=""
      ;;
    tensorflow-alone)
      training_args tensorflow_alone "$folder" --data-dir "$DATA_DIR" --pin-cpus 1
      run_step "$VENV_PYTHON" "${TRAINING_ARGS[@]}"
      ;;
    ray) ray_row "$folder" ;;
    stock-step) DEMO_STEP_TIMING=0 ray_row "$folder" ;;
    # The Python side forwards DEMO_* switches to the Ray workers.
    bfloat16 | float16) DEMO_ALLREDUCE_DTYPE="$row" ray_row "$folder" ;;
    batch-128 | batch-256) ray_row "$folder" "BATCH_SIZE=${row#batch-}" LR_SCALING=linear ;;
  esac || die "Row $row failed (see above; its folder is $folder)."
}

main() {
  parse_common_flags "$@"
  resolve_settings
  print_plan
  if ((DRY_RUN == 1)); then
    log "Dry run: nothing was started."
    return 0
  fi
  ensure_venv requirements.txt
  new_run_dir "$RESULTS_DIR" levers
  trap cleanup EXIT
  trap_interrupts
  log "This run's folder: $RUN_DIR"
  PIN_CPUS=1 start_cluster_nodes "$WORKERS"
  local row
  for row in $ROWS; do
    run_row "$row"
  done
  log "The levers table"
  run_step "$VENV_PYTHON" -m analysis.levers --run-dir "$RUN_DIR" || die "The levers table could not be written (see above)."
  exit 0
}

main "$@"
