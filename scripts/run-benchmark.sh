#!/usr/bin/env bash
# Train the same CNN twice, plain Keras and Ray Train data-parallel, and compare them.
# The local target starts a real multi-node Ray cluster on this machine (a head node and
# NUM_WORKERS worker nodes, each its own `ray start`), runs both trainings, prints the
# comparison and stops the cluster it started, whatever happens.
#
# Usage: ./scripts/run-benchmark.sh [--full] [--smoke-test] [--help]
#   PYTHON=python3.11    the Python 3.11 that creates .venv the first time
#   TARGET=auto          auto, local or minikube (auto: minikube when the RayCluster from
#                        ./scripts/install-ray.sh answers, else local)
#   NUM_WORKERS=2        Ray Train workers (local: also the number of worker nodes)
#   CPUS_PER_WORKER=1    CPUs per Ray worker; the baseline gets the same budget
#   EPOCHS=3             passes over the training set (--full: 10)
#   BATCH_SIZE=64        batch per worker; the baseline uses BATCH_SIZE x NUM_WORKERS,
#                        the same global batch, so both take the same optimizer steps
#   DATASET=synthetic    synthetic (offline) or cifar10 (--full: cifar10)
#   TRAIN_SIZE=4096      training examples (--full: 50000)
#   TEST_SIZE=1024       test examples (--full: 10000)
#   DATA_DIR=.data       CIFAR-10 cache, or a folder holding cifar-10-batches-py
#   RESULTS_DIR=results  each run writes its results, comparison and REPORT.md into a new
#                        RESULTS_DIR/<YYYYmmdd-HHMMSS>-<target>/; RESULTS_DIR/latest points at
#                        the last run that completed; a failed run's folder holds FAILED
#   RUN_DIR=             write into this new folder instead, leaving latest alone
#                        (scripts/scaling-benchmark.sh uses it for each configuration)
#   BASELINE_RESULTS=    reuse this baseline_results.json instead of training the baseline
#                        (scripts/scaling-benchmark.sh's SINGLE_BASELINE=1 uses it)
#   RAY_ADDRESS=         use this running Ray cluster (host:port) instead of starting one;
#                        it is never stopped by this script
#   RAY_PORT=6380        head port of the local cluster
#   DASHBOARD_PORT=8265  dashboard port of the local cluster
#   PIN_CPUS=auto        pin local worker nodes and the baseline to their own cores (auto, 1, 0)
#   DEMO_ALLOCATOR=tuned how TensorFlow gets memory for tensors, the same for both runs:
#                        tuned (BFC allocator, glibc kept from trimming) or system (malloc);
#                        see lesson/workarounds.py, section 2
#   CHECKPOINT=0         1: the Ray run saves a checkpoint every epoch and a restarted worker
#                        group resumes from it (0, the default, keeps the quick start as fast)
#   CHECKPOINT_DIR=checkpoints  checkpoint storage every node reaches (local target; on
#                        minikube the runs go to K8S_CHECKPOINT_PATH=s3://ray-checkpoints/runs,
#                        the store that CHECKPOINTS=1 ./scripts/install-ray.sh installs;
#                        KEEP_RUNS=5 runs are kept there, older ones deleted)
#   MAX_FAILURES=2       worker group restarts Ray Train may make before the run fails
#   RESUME=0             1: continue the latest interrupted Ray run in CHECKPOINT_DIR from its
#                        last checkpoint (same settings; the baseline runs again)
#   MONITORING=0         1 (local target): Prometheus scrapes the cluster into the run folder,
#                        Grafana starts when installed, REPORT.md plots the time series
#                        (docs/MONITORING.md); without prometheus the run goes on unmonitored
#   PROMETHEUS_PORT=9095 Prometheus' port for MONITORING=1
#   PROMETHEUS_SCRAPE_SECONDS=5  its scrape interval (--smoke-test: 2)
#   GRAFANA_PORT=3005    Grafana's port for MONITORING=1 (when Grafana is installed)
#
# --full runs the whole CIFAR-10 for 10 epochs (hours on a laptop); --smoke-test runs a
# tiny one-epoch version of everything in about a minute.
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/monitoring.sh
source "$(dirname "${BASH_SOURCE[0]}")/monitoring.sh"

MODE="default"
TARGET="${TARGET:-auto}"
NUM_WORKERS="${NUM_WORKERS:-}"
CPUS_PER_WORKER="${CPUS_PER_WORKER:-}"
EPOCHS="${EPOCHS:-}"
BATCH_SIZE="${BATCH_SIZE:-}"
DATASET="${DATASET:-}"
TRAIN_SIZE="${TRAIN_SIZE:-}"
TEST_SIZE="${TEST_SIZE:-}"
DATA_DIR="${DATA_DIR:-$REPO_ROOT/.data}"
RESULTS_DIR="${RESULTS_DIR:-$REPO_ROOT/results}"
RUN_DIR="${RUN_DIR:-}"
# Whether the caller chose the run folder (then it, not this script, owns `latest`).
RUN_DIR_GIVEN="${RUN_DIR:+1}"
INTERRUPTED=""
RAY_ADDRESS="${RAY_ADDRESS:-}"
# Whether the user pointed us at a cluster of theirs (never started or stopped here).
EXISTING_CLUSTER="${RAY_ADDRESS:+1}"
RAY_PORT="${RAY_PORT:-6380}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
PIN_CPUS="${PIN_CPUS:-auto}"
BASELINE_RESULTS="${BASELINE_RESULTS:-}"
CHECKPOINT="${CHECKPOINT:-0}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-$REPO_ROOT/checkpoints}"
MAX_FAILURES="${MAX_FAILURES:-}"
RESUME="${RESUME:-0}"
# The .venv interpreter; PYTHON (read by ensure_venv) chooses the one that creates .venv.
VENV_PYTHON="$REPO_ROOT/.venv/bin/python"
TARGET_REASON=""
CLUSTER_STARTED=0

# Read the command-line flags.
parse_flags() {
  while (($# > 0)); do
    case "$1" in
      --full) MODE="full" ;;
      --smoke-test) MODE="smoke" ;;
      -h | --help)
        print_usage
        exit 0
        ;;
      *) die "Unknown argument '$1'. Run $0 --help for the settings (they are environment variables)." ;;
    esac
    shift
  done
}

# Fill in the defaults of the chosen mode and validate every setting.
resolve_settings() {
  require_one_of TARGET "$TARGET" auto local minikube
  resolve_recipe "$MODE"
  MAX_FAILURES="${MAX_FAILURES:-$DEFAULT_MAX_FAILURES}"
  [[ -z "$NUM_WORKERS" ]] || require_positive_int NUM_WORKERS "$NUM_WORKERS"
  [[ -z "$CPUS_PER_WORKER" ]] || require_positive_int CPUS_PER_WORKER "$CPUS_PER_WORKER"
  require_positive_int RAY_PORT "$RAY_PORT"
  require_positive_int DASHBOARD_PORT "$DASHBOARD_PORT"
  require_one_of PIN_CPUS "$PIN_CPUS" auto 0 1
  require_one_of CHECKPOINT "$CHECKPOINT" 0 1
  require_one_of RESUME "$RESUME" 0 1
  require_non_negative_int MAX_FAILURES "$MAX_FAILURES"
  require_one_of DEMO_ALLOCATOR "${DEMO_ALLOCATOR:-tuned}" tuned system
  if [[ -n "$BASELINE_RESULTS" && ! -r "$BASELINE_RESULTS" ]]; then
    die "BASELINE_RESULTS '$BASELINE_RESULTS' is not a readable file. Point it at a baseline_results.json, or leave it unset to train the baseline."
  fi
  check_monitoring_settings
}

# Decide between the local cluster and minikube, and say why.
choose_target() {
  local minikube_file="$REPO_ROOT/scripts/minikube-target.sh"
  if [[ -f "$minikube_file" ]]; then
    # shellcheck source=scripts/minikube-target.sh
    source "$minikube_file"
  fi
  case "$TARGET" in
    local) TARGET_REASON="TARGET=local was asked for" ;;
    minikube)
      declare -F run_minikube_target >/dev/null ||
        die "TARGET=minikube needs scripts/minikube-target.sh, which is missing from this checkout."
      TARGET_REASON="TARGET=minikube was asked for"
      ;;
    auto)
      if declare -F minikube_target_available >/dev/null && minikube_target_available; then
        TARGET="minikube"
        TARGET_REASON="the RayCluster installed by ./scripts/install-ray.sh answers (TARGET=local to override)"
      else
        TARGET="local"
        TARGET_REASON="no RayCluster from ./scripts/install-ray.sh is reachable (TARGET=minikube to insist)"
      fi
      ;;
  esac
  echo "Target: $TARGET, because $TARGET_REASON."
}

# Print the effective settings.
print_settings() {
  log "Settings: NUM_WORKERS=${NUM_WORKERS:-<from the cluster>} CPUS_PER_WORKER=${CPUS_PER_WORKER:-<from the cluster>} EPOCHS=$EPOCHS BATCH_SIZE=$BATCH_SIZE (per worker) DATASET=$DATASET TRAIN_SIZE=$TRAIN_SIZE TEST_SIZE=$TEST_SIZE RESULTS_DIR=$RESULTS_DIR"
  if [[ "$TARGET" == "local" ]]; then
    log "Local cluster: ${RAY_ADDRESS:-new one on 127.0.0.1:$RAY_PORT, dashboard port $DASHBOARD_PORT} PIN_CPUS=$PIN_CPUS"
  fi
}

# Fail before any training when the results folder cannot be written.
check_results_dir() {
  mkdir -p "$RESULTS_DIR" 2>/dev/null && [[ -w "$RESULTS_DIR" ]] ||
    die "RESULTS_DIR '$RESULTS_DIR' cannot be created or written. Set RESULTS_DIR to a writable folder."
}

# Stop the local cluster if this script started it (runs on every exit).
cleanup() {
  local status=$?
  stop_monitoring
  stop_started_cluster
  # Minikube: ending `kubectl exec` leaves the training running in the head pod; stop it.
  ((status == 0)) || ! declare -F minikube_stop_pod_run >/dev/null || minikube_stop_pod_run
  close_run_dir "$status" "$RUN_DIR" "$([[ -n "$RUN_DIR_GIVEN" ]] && echo 0 || echo 1)"
  exit "$status"
}

# Give this run a folder of its own and point RESULTS_DIR at it; from here on, a failure
# or an interrupt leaves a FAILED file there and stops the cluster.
start_run_dir() {
  if [[ -n "$RUN_DIR_GIVEN" ]]; then
    mkdir -p "$RUN_DIR" 2>/dev/null && [[ -w "$RUN_DIR" ]] ||
      die "RUN_DIR '$RUN_DIR' cannot be created or written. Set RUN_DIR to a new folder, or leave it unset."
    [[ -z "$(ls -A "$RUN_DIR")" ]] ||
      die "RUN_DIR '$RUN_DIR' already holds files: a run never overwrites another. Pick a new folder, or leave RUN_DIR unset."
  else
    local suffix="$TARGET"
    [[ "$MODE" == default ]] || suffix="$TARGET-$MODE"
    RUN_DIR="$(create_run_dir "$RESULTS_DIR" "$suffix")" ||
      die "Could not create a run folder in RESULTS_DIR '$RESULTS_DIR'. Set RESULTS_DIR to a writable folder."
  fi
  trap cleanup EXIT
  trap 'INTERRUPTED=1; exit 130' INT TERM
  RESULTS_DIR="$RUN_DIR"
  log "This run's folder: $RUN_DIR"
}

# Fail in seconds, before any training, when RAY_ADDRESS names a cluster that does not
# answer: usually one left exported by `eval "$(./scripts/local-cluster.sh env)"` and
# stopped since.
check_existing_cluster() {
  [[ -n "$EXISTING_CLUSTER" ]] || return 0
  if [[ "$RAY_ADDRESS" =~ ^[^/]+:[0-9]+$ ]] && ! address_answers "$RAY_ADDRESS"; then
    die "RAY_ADDRESS=$RAY_ADDRESS is set in your environment, but no Ray cluster answers there. It is probably left over from 'eval \"\$(./scripts/local-cluster.sh env)\"' for a cluster that has stopped since. Run 'unset RAY_ADDRESS' and this script starts a cluster of its own, or start the cluster at that address first."
  fi
}

# Start the local multi-node cluster, or use the one at RAY_ADDRESS.
start_local_cluster() {
  if [[ -n "$EXISTING_CLUSTER" ]]; then
    log "Using the running Ray cluster at $RAY_ADDRESS (it will be left running)."
    export RAY_ADDRESS
    return 0
  fi
  start_cluster_nodes "$NUM_WORKERS"
}

# Plain Keras in one process with the budget of one Ray worker and the Ray run's global batch.
run_baseline() {
  if [[ -n "$BASELINE_RESULTS" ]]; then
    log "1/3 Baseline: reusing $BASELINE_RESULTS (BASELINE_RESULTS)"
    cp "$BASELINE_RESULTS" "$RESULTS_DIR/baseline_results.json" ||
      die "Could not copy BASELINE_RESULTS '$BASELINE_RESULTS' into $RESULTS_DIR."
    return 0
  fi
  local pin=()
  if [[ "$PIN_CPUS" == 1 || ("$PIN_CPUS" == auto && -z "$EXISTING_CLUSTER") ]] && command -v taskset >/dev/null 2>&1; then
    pin=(taskset -c "0-$((CPUS_PER_WORKER - 1))")
  fi
  log "1/3 Baseline: plain Keras, $CPUS_PER_WORKER CPU(s), batch $((BATCH_SIZE * NUM_WORKERS))"
  training_args baseline "$NUM_WORKERS" "$CPUS_PER_WORKER" "$RESULTS_DIR" --data-dir "$DATA_DIR"
  ${pin[@]+"${pin[@]}"} "$VENV_PYTHON" "${TRAINING_ARGS[@]}" || die "The baseline training failed (see above)."
}

# Ray Train with NUM_WORKERS workers on the cluster; checkpoints are opt-in (CHECKPOINT=1,
# RESUME=1; see lesson/fault_tolerance.py).
run_ray() {
  log "2/3 Ray Train: $NUM_WORKERS workers x $CPUS_PER_WORKER CPU(s), batch $BATCH_SIZE per worker"
  training_args ray "$NUM_WORKERS" "$CPUS_PER_WORKER" "$RESULTS_DIR" --data-dir "$DATA_DIR" \
    --address "$RAY_ADDRESS" --storage-path "$CHECKPOINT_DIR"
  "$VENV_PYTHON" "${TRAINING_ARGS[@]}" || die "The Ray training failed (see above)."
}

# Turn the two results into speedup, efficiency, throughput and accuracy.
run_compare() {
  log "3/3 Comparison"
  "$VENV_PYTHON" -m analysis.compare --results-dir "$RESULTS_DIR" --num-workers "$NUM_WORKERS" ||
    die "The comparison failed (see above)."
  log "Results: $RESULTS_DIR/baseline_results.json, $RESULTS_DIR/ray_results_${NUM_WORKERS}workers.json, $RESULTS_DIR/comparison.json"
}

# REPORT.md and the plots in the run folder; prints whether each target holds.
write_report() {
  log "Report"
  "$VENV_PYTHON" -m analysis.report --run-dir "$RUN_DIR" --data-dir "$DATA_DIR" ||
    die "The report could not be written (see above); the JSON results are in $RUN_DIR."
}

# The whole local benchmark.
run_local_target() {
  NUM_WORKERS="${NUM_WORKERS:-$DEFAULT_NUM_WORKERS}"
  CPUS_PER_WORKER="${CPUS_PER_WORKER:-$DEFAULT_CPUS_PER_WORKER}"
  print_settings
  check_existing_cluster
  check_results_dir
  ensure_venv requirements.txt
  start_run_dir
  prepare_monitoring "$RUN_DIR" "$MODE"
  start_local_cluster
  start_monitoring
  run_baseline
  run_ray
  run_compare
  write_report
}

main() {
  parse_flags "$@"
  resolve_settings
  choose_target
  if [[ "$TARGET" == "minikube" ]]; then
    # Everything runs in the head pod, the report too: no .venv on this machine.
    print_settings
    check_results_dir
    start_run_dir
    export NUM_WORKERS CPUS_PER_WORKER EPOCHS BATCH_SIZE DATASET TRAIN_SIZE TEST_SIZE RESULTS_DIR \
      CHECKPOINT RESUME MAX_FAILURES
    run_minikube_target
  else
    run_local_target
  fi
}

main "$@"
