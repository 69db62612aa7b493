#!/usr/bin/env bash
# Scaling sweep on a real local multi-node Ray cluster: for each worker count N (1, the
# overhead control, then powers of two while the machine has a core to spare) the plain
# Keras baseline and Ray Train with N workers, on the same per-worker budget, one after
# the other on one cluster; then prints the speedups and whether each target holds, and
# writes REPORT.md with its plots. Each configuration is one ./scripts/run-benchmark.sh run.
#
# Baselines: Ray with N workers is compared with plain Keras at the same global batch
# (BATCH_SIZE x N) on the CPUs of one worker, so both take the same optimizer steps and the
# throughput ratio and the accuracy difference come from one recipe. That costs one
# baseline per N. SINGLE_BASELINE=1 trains one baseline (the first configuration's) and
# reuses it for every N: throughput per core barely depends on the batch, so the speedups
# stay honest, but the accuracy of a different global batch is not comparable and is not
# judged.
#
# Usage: ./scripts/experiments/scaling-benchmark.sh [--smoke-test] [--dry-run] [--help]
#   WORKER_COUNTS=       Ray worker counts; default 1 and the powers of two up to one less
#                        than the cores (at least 2): "1 2" on 2 or 4 cores, "1 2 4" on 8,
#                        "1 2 4 8" on 16 (with CPUS_PER_WORKER=1)
#   SINGLE_BASELINE=0    1: one baseline for every worker count (see above)
#   RECIPE: the training recipe (lesson/recipe.py); WORKER_COUNTS replaces NUM_WORKERS:
#   DATA_DIR=.data       CIFAR-10 cache, or a folder holding cifar-10-batches-py
#   RESULTS_DIR=results  the sweep goes into a new RESULTS_DIR/<YYYYmmdd-HHMMSS>-sweep/ (one
#                        workers-<N>/ folder per configuration, REPORT.md on top);
#                        RESULTS_DIR/latest points at it once it completes
#   ALLOW_OVERSUBSCRIBE=0  1: let the largest of WORKER_COUNTS x CPUS_PER_WORKER exceed this
#                        machine's cores (refused otherwise: the workers would share cores)
#   RAY_PORT=6380        head port of the sweep's local cluster
#   DASHBOARD_PORT=8265  dashboard port of the sweep's local cluster
#   PIN_CPUS=auto        pin each worker node and the baselines to their own cores:
#                        auto (when taskset exists and there are enough cores), 1 or 0
#
# --dry-run prints the plan and its estimated time (from the rates measured in the committed
# quick-start run, docs/results/quickstart/, which your machine may beat or miss) and starts
# nothing; --smoke-test runs a tiny one-epoch sweep.
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

COMMAND_FLAGS=(--smoke-test MODE=smoke --dry-run DRY_RUN=1)
DRY_RUN=0
WORKER_COUNTS="${WORKER_COUNTS:-}"
DATA_DIR="${DATA_DIR:-$REPO_ROOT/.data}"
RESULTS_DIR="${RESULTS_DIR:-$REPO_ROOT/results}"
RAY_PORT="${RAY_PORT:-6380}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
PIN_CPUS="${PIN_CPUS:-auto}"
# The .venv interpreter; PYTHON (read by ensure_venv) chooses the one that creates .venv.
VENV_PYTHON="$REPO_ROOT/.venv/bin/python"
CORES="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
# What the time estimate is made of, read from the committed quick-start run in main.
QUICKSTART_DIR="$REPO_ROOT/docs/results/quickstart"
SINGLE_BASELINE="${SINGLE_BASELINE:-0}"
RUN_DIR=""
INTERRUPTED=""
CLUSTER_STARTED=0
MAX_WORKERS=0
COUNTS=()

# Fill in the defaults, validate every setting and decide the worker counts and pinning.
resolve_settings() {
  resolve_recipe "$MODE"
  require_port RAY_PORT "$RAY_PORT"
  require_port DASHBOARD_PORT "$DASHBOARD_PORT"
  require_one_of PIN_CPUS "$PIN_CPUS" auto 0 1
  require_one_of SINGLE_BASELINE "$SINGLE_BASELINE" 0 1
  if [[ -z "$WORKER_COUNTS" ]]; then
    # Powers of two up to one less than the cores (a core left for Ray's own processes), and 2 at least.
    local most=$(((CORES - 1) / CPUS_PER_WORKER)) count=2
    ((most >= 2)) || most=2
    WORKER_COUNTS="1"
    while ((count <= most)); do
      WORKER_COUNTS="$WORKER_COUNTS $count"
      count=$((count * 2))
    done
  fi
  local count
  for count in $WORKER_COUNTS; do
    require_positive_int WORKER_COUNTS "$count"
  done
  [[ -n "${WORKER_COUNTS// /}" ]] || die "WORKER_COUNTS is empty: give worker counts, e.g. WORKER_COUNTS=\"1 2\"."
  # Ascending, each once; 10# so that "02" is read as 2.
  read -r -a COUNTS <<<"$(for count in $WORKER_COUNTS; do echo $((10#$count)); done | sort -nu | tr '\n' ' ')"
  MAX_WORKERS="${COUNTS[${#COUNTS[@]} - 1]}"
  require_cores "$MAX_WORKERS" "$CPUS_PER_WORKER" "the largest of WORKER_COUNTS"
  if [[ "$PIN_CPUS" == auto ]]; then
    # Decided here once, for the cluster and every baseline alike.
    PIN_CPUS=0
    if command -v taskset >/dev/null 2>&1 && ((MAX_WORKERS * CPUS_PER_WORKER <= CORES)); then
      PIN_CPUS=1
    fi
  fi
}

# Print the effective settings, the configurations and the time they should take.
print_plan() {
  log "Settings: WORKER_COUNTS=\"${COUNTS[*]}\" SINGLE_BASELINE=$SINGLE_BASELINE CPUS_PER_WORKER=$CPUS_PER_WORKER EPOCHS=$EPOCHS BATCH_SIZE=$BATCH_SIZE (per worker) DATASET=$DATASET TRAIN_SIZE=$TRAIN_SIZE TEST_SIZE=$TEST_SIZE RESULTS_DIR=$RESULTS_DIR"
  log "Cluster: 127.0.0.1:$RAY_PORT, dashboard port $DASHBOARD_PORT, $MAX_WORKERS worker node(s) of $CPUS_PER_WORKER CPU(s); PIN_CPUS=$PIN_CPUS; this machine has $CORES cores"
  local workers index=0 rates baseline_rate efficiency baseline_overhead ray_overhead
  # From the committed quick-start run: the baseline's images/s per CPU, the 2-worker scaling
  # efficiency, and each run's time outside training (start-up, validation, evaluation).
  rates="$("$(settings_python)" -c '
import json, sys
comparison = json.load(open(sys.argv[1]))
baseline, ray = comparison["baseline"], comparison["ray"]
print(round(baseline["images_per_second"] / baseline["cpus_per_worker"], 1),
      round(comparison["throughput_ratio"] / comparison["num_workers"], 2),
      round(baseline["total_time_seconds"] - baseline["train_time_seconds"]),
      round(ray["total_time_seconds"] - ray["train_time_seconds"]))' "$QUICKSTART_DIR/comparison.json" 2>/dev/null)" ||
    rates=""
  for workers in "${COUNTS[@]}"; do
    index=$((index + 1))
    if [[ "$SINGLE_BASELINE" == 1 && $index -gt 1 ]]; then
      log "Configuration $index/${#COUNTS[@]}: the first configuration's baseline again, then Ray Train with $workers worker(s) at batch $BATCH_SIZE each"
    else
      log "Configuration $index/${#COUNTS[@]}: plain Keras at batch $((BATCH_SIZE * workers)), then Ray Train with $workers worker(s) at batch $BATCH_SIZE each"
    fi
  done
  if [[ -z "$rates" ]]; then
    log "No estimate of the time: $QUICKSTART_DIR/comparison.json could not be read."
    return 0
  fi
  read -r baseline_rate efficiency baseline_overhead ray_overhead <<<"$rates"
  "$(settings_python)" -c '
import sys
counts, images, cpus, single = [int(n) for n in sys.argv[1].split()], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
rate, efficiency, baseline_overhead, ray_overhead = map(float, sys.argv[5:9])
seconds = 20.0
for index, workers in enumerate(counts):
    if not (single and index):
        seconds += images / (rate * cpus) + baseline_overhead
    seconds += images / (rate * cpus * (1 if workers == 1 else workers * efficiency)) + ray_overhead
print(f"[scaling-benchmark.sh] Estimated time: about {seconds / 60:.0f} minutes ({images} images per run at "
      f"{rate} images/s per CPU for plain Keras and scaling efficiency {efficiency} for Ray, as in "
      "docs/results/quickstart/; a machine with more cores per worker scales better)")
' "${COUNTS[*]}" "$((TRAIN_SIZE * EPOCHS))" "$CPUS_PER_WORKER" "$SINGLE_BASELINE" "$baseline_rate" "$efficiency" "$baseline_overhead" "$ray_overhead"
}

# Stop the cluster if this script started it and mark the run folder (runs on every exit).
cleanup() {
  local status=$?
  ignore_interrupts
  stop_started_cluster
  close_run_dir "$status" "$RUN_DIR" 1
  exit "$status"
}

# A new folder for this sweep; from here on a failure or an interrupt leaves FAILED in it.
start_run_dir() {
  local suffix="sweep"
  [[ "$MODE" == default ]] || suffix="sweep-$MODE"
  new_run_dir "$RESULTS_DIR" "$suffix"
  trap cleanup EXIT
  trap_interrupts
  log "This sweep's folder: $RUN_DIR"
}

# Baseline at the equal global batch, Ray Train with N workers and their comparison,
# by run-benchmark.sh on this sweep's cluster, into RUN_DIR/workers-N.
run_configuration() {
  local workers="$1" index="$2" folder="$RUN_DIR/workers-$1" baseline
  # Before the command: its RUN_DIR= prefix would change what shared_baseline sees.
  baseline="$(shared_baseline "$index")"
  log "Configuration $index/${#COUNTS[@]}: $workers worker(s) -> $folder"
  # The whole resolved recipe, so that every configuration trains the same one.
  local name
  local -a recipe=()
  for name in $RECIPE_NAMES; do recipe+=("$name=${!name}"); done
  run_step env "${recipe[@]}" TARGET=local NUM_WORKERS="$workers" DATA_DIR="$DATA_DIR" RESULTS_DIR="$folder" \
    RUN_DIR="$folder" RAY_ADDRESS="$RAY_ADDRESS" PIN_CPUS="$PIN_CPUS" BASELINE_RESULTS="$baseline" \
    "$SCRIPTS_DIR/run-benchmark.sh" ||
    die "The configuration with $workers worker(s) failed (see above; its folder is $folder)."
}

# With SINGLE_BASELINE=1, the first configuration's baseline for every later one; else nothing.
shared_baseline() {
  local index="$1"
  if [[ "$SINGLE_BASELINE" == 1 && "$index" -gt 1 ]]; then
    echo "$RUN_DIR/workers-${COUNTS[0]}/baseline_results.json"
  fi
}

# The sweep's report over every configuration: targets, table, per-class results, plots.
write_report() {
  log "Report over all configurations"
  run_step "$VENV_PYTHON" -m analysis.report --run-dir "$RUN_DIR" --data-dir "$DATA_DIR" ||
    die "The report could not be written (see above); the JSON results are in $RUN_DIR."
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
  start_run_dir
  # One cluster for the whole sweep, with a worker node per worker of the largest configuration.
  start_cluster_nodes "$MAX_WORKERS"
  local workers index=0
  for workers in "${COUNTS[@]}"; do
    index=$((index + 1))
    run_configuration "$workers" "$index"
  done
  write_report
  # Exit here, not after main returns: bash reads a script while it runs it, and an edit
  # to this file during a 20-minute sweep would otherwise be read at a stale offset.
  exit 0
}

main "$@"
