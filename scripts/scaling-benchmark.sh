#!/usr/bin/env bash
# Scaling sweep on a real local multi-node Ray cluster: for each worker count N (1, the
# overhead control, and 2; and 4 when the machine has the cores) the plain Keras baseline
# and Ray Train with N workers, all on the same per-worker budget, one after the other on
# one cluster; then prints the speedups and whether each target holds, and writes
# REPORT.md with its plots. Each configuration is one ./scripts/run-benchmark.sh run.
#
# Baselines: Ray with N workers is compared with plain Keras at the same global batch
# (BATCH_SIZE x N) on the CPUs of one worker, so both take the same optimizer steps and
# the throughput ratio and the accuracy difference come from one recipe. That costs one
# baseline per N. A single baseline at the per-worker batch would save one run (throughput
# per core barely depends on the batch), but its accuracy would not be comparable with
# the N-worker run's, so the accuracy target would need the equal-batch baseline anyway.
#
# Time with the defaults on a 2-core machine: about 22 minutes, estimated from measured
# rates (47 img/s per core for the baseline, 62 img/s for 2 Ray workers, ~100 s of Ray
# start-up, validation and evaluation per run). --dry-run prints the estimate for yours.
#
# Usage: ./scripts/scaling-benchmark.sh [--smoke-test] [--dry-run] [--help]
#   WORKER_COUNTS="1 2"  Ray worker counts; default "1 2", or "1 2 4" when the machine
#                        has 4 x CPUS_PER_WORKER cores or more
#   CPUS_PER_WORKER=1    CPUs per Ray worker; each baseline gets the same budget
#   EPOCHS=3             passes over the training set (--smoke-test: 1)
#   BATCH_SIZE=64        batch per worker (--smoke-test: 32)
#   DATASET=synthetic    synthetic (offline) or cifar10
#   TRAIN_SIZE=4096      training examples (--smoke-test: 256)
#   TEST_SIZE=1024       test examples (--smoke-test: 128)
#   DATA_DIR=.data       CIFAR-10 cache, or a folder holding cifar-10-batches-py
#   RESULTS_DIR=results  the sweep goes into a new RESULTS_DIR/<YYYYmmdd-HHMMSS>-sweep/ (one
#                        workers-<N>/ folder per configuration, REPORT.md on top);
#                        RESULTS_DIR/latest points at it once it completes
#   RAY_PORT=6380        head port of the sweep's local cluster
#   DASHBOARD_PORT=8265  dashboard port of the sweep's local cluster
#   PIN_CPUS=auto        pin each worker node and the baselines to their own cores:
#                        auto (when taskset exists and there are enough cores), 1 or 0
#
# --smoke-test runs a tiny one-epoch sweep (5 minutes measured on 2 busy cores); --dry-run
# prints the plan and the time estimate and starts nothing.
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE="default"
DRY_RUN=0
WORKER_COUNTS="${WORKER_COUNTS:-}"
CPUS_PER_WORKER="${CPUS_PER_WORKER:-}"
EPOCHS="${EPOCHS:-}"
BATCH_SIZE="${BATCH_SIZE:-}"
DATASET="${DATASET:-}"
TRAIN_SIZE="${TRAIN_SIZE:-}"
TEST_SIZE="${TEST_SIZE:-}"
DATA_DIR="${DATA_DIR:-$REPO_ROOT/.data}"
RESULTS_DIR="${RESULTS_DIR:-$REPO_ROOT/results}"
RAY_PORT="${RAY_PORT:-6380}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
PIN_CPUS="${PIN_CPUS:-auto}"
# The .venv interpreter; PYTHON (read by ensure_venv) chooses the one that creates .venv.
VENV_PYTHON="$REPO_ROOT/.venv/bin/python"
CORES="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
# Measured on a 2-core AMD EPYC VM (README): what the time estimate is made of.
BASELINE_IMAGES_PER_SECOND_PER_CPU=47
RAY_SCALING_PERCENT=66 # 2 workers reached 62 img/s, 66% of 2 x 47
RAY_OVERHEAD_SECONDS=100
BASELINE_OVERHEAD_SECONDS=30
RUN_DIR=""
INTERRUPTED=""
CLUSTER_STARTED=0
MAX_WORKERS=0
COUNTS=()

# Read the command-line flags.
parse_flags() {
  while (($# > 0)); do
    case "$1" in
      --smoke-test) MODE="smoke" ;;
      --dry-run) DRY_RUN=1 ;;
      -h | --help)
        print_usage
        exit 0
        ;;
      *) die "Unknown argument '$1'. Run $0 --help for the settings (they are environment variables)." ;;
    esac
    shift
  done
}

# Fill in the defaults, validate every setting and decide the worker counts and pinning.
resolve_settings() {
  resolve_recipe "$MODE"
  CPUS_PER_WORKER="${CPUS_PER_WORKER:-$DEFAULT_CPUS_PER_WORKER}"
  require_positive_int CPUS_PER_WORKER "$CPUS_PER_WORKER"
  require_positive_int RAY_PORT "$RAY_PORT"
  require_positive_int DASHBOARD_PORT "$DASHBOARD_PORT"
  require_one_of PIN_CPUS "$PIN_CPUS" auto 0 1
  if [[ -z "$WORKER_COUNTS" ]]; then
    WORKER_COUNTS="1 2"
    ((CORES < 4 * CPUS_PER_WORKER)) || WORKER_COUNTS="1 2 4"
  fi
  local count
  for count in $WORKER_COUNTS; do
    require_positive_int WORKER_COUNTS "$count"
  done
  [[ -n "${WORKER_COUNTS// /}" ]] || die "WORKER_COUNTS is empty: give worker counts, e.g. WORKER_COUNTS=\"1 2\"."
  # Ascending, each once; 10# so that "02" is read as 2.
  read -r -a COUNTS <<<"$(for count in $WORKER_COUNTS; do echo $((10#$count)); done | sort -nu | tr '\n' ' ')"
  MAX_WORKERS="${COUNTS[${#COUNTS[@]} - 1]}"
  if ((MAX_WORKERS * CPUS_PER_WORKER > CORES)); then
    warn "$MAX_WORKERS workers x $CPUS_PER_WORKER CPU(s) need more than this machine's $CORES cores: the workers will share cores and the speedups will show it."
  fi
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
  log "Settings: WORKER_COUNTS=\"${COUNTS[*]}\" CPUS_PER_WORKER=$CPUS_PER_WORKER EPOCHS=$EPOCHS BATCH_SIZE=$BATCH_SIZE (per worker) DATASET=$DATASET TRAIN_SIZE=$TRAIN_SIZE TEST_SIZE=$TEST_SIZE RESULTS_DIR=$RESULTS_DIR"
  log "Cluster: 127.0.0.1:$RAY_PORT, dashboard port $DASHBOARD_PORT, $MAX_WORKERS worker node(s) of $CPUS_PER_WORKER CPU(s); PIN_CPUS=$PIN_CPUS; this machine has $CORES cores"
  local workers index=0 images=$((TRAIN_SIZE * EPOCHS)) seconds=20 baseline_rate ray_rate
  baseline_rate=$((BASELINE_IMAGES_PER_SECOND_PER_CPU * CPUS_PER_WORKER))
  for workers in "${COUNTS[@]}"; do
    index=$((index + 1))
    log "Configuration $index/${#COUNTS[@]}: plain Keras at batch $((BATCH_SIZE * workers)), then Ray Train with $workers worker(s) at batch $BATCH_SIZE each"
    # Ray with one worker runs at the baseline's rate; more workers at the measured scaling.
    ray_rate=$baseline_rate
    ((workers == 1)) || ray_rate=$((baseline_rate * workers * RAY_SCALING_PERCENT / 100))
    seconds=$((seconds + images / baseline_rate + BASELINE_OVERHEAD_SECONDS + images / ray_rate + RAY_OVERHEAD_SECONDS))
  done
  log "Estimated time: about $(((seconds + 59) / 60)) minutes ($images images per run at $BASELINE_IMAGES_PER_SECOND_PER_CPU img/s per CPU for plain Keras, $RAY_SCALING_PERCENT% scaling for Ray)"
}

# Stop the cluster if this script started it and mark the run folder (runs on every exit).
cleanup() {
  local status=$?
  stop_started_cluster
  close_run_dir "$status" "$RUN_DIR" 1
  exit "$status"
}

# A new folder for this sweep; from here on a failure or an interrupt leaves FAILED in it.
start_run_dir() {
  local suffix="sweep"
  [[ "$MODE" == default ]] || suffix="sweep-$MODE"
  RUN_DIR="$(create_run_dir "$RESULTS_DIR" "$suffix")" ||
    die "Could not create a run folder in RESULTS_DIR '$RESULTS_DIR'. Set RESULTS_DIR to a writable folder."
  trap cleanup EXIT
  trap 'INTERRUPTED=1; exit 130' INT TERM
  log "This sweep's folder: $RUN_DIR"
}

# Baseline at the equal global batch, Ray Train with N workers and their comparison,
# by run-benchmark.sh on this sweep's cluster, into RUN_DIR/workers-N.
run_configuration() {
  local workers="$1" index="$2" folder="$RUN_DIR/workers-$1"
  log "Configuration $index/${#COUNTS[@]}: $workers worker(s) -> $folder"
  TARGET=local NUM_WORKERS="$workers" CPUS_PER_WORKER="$CPUS_PER_WORKER" EPOCHS="$EPOCHS" \
    BATCH_SIZE="$BATCH_SIZE" DATASET="$DATASET" TRAIN_SIZE="$TRAIN_SIZE" TEST_SIZE="$TEST_SIZE" \
    DATA_DIR="$DATA_DIR" RESULTS_DIR="$folder" RUN_DIR="$folder" RAY_ADDRESS="$RAY_ADDRESS" \
    PIN_CPUS="$PIN_CPUS" "$REPO_ROOT/scripts/run-benchmark.sh" ||
    die "The configuration with $workers worker(s) failed (see above; its folder is $folder)."
}

# The sweep's report over every configuration: targets, table, per-class results, plots.
write_report() {
  log "Report over all configurations"
  "$VENV_PYTHON" -m training.report --run-dir "$RUN_DIR" --data-dir "$DATA_DIR" ||
    die "The report could not be written (see above); the JSON results are in $RUN_DIR."
}

main() {
  parse_flags "$@"
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
