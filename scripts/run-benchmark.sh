#!/usr/bin/env bash
# Train the same CNN twice, plain Keras and Ray Train data-parallel, and compare them.
# The local target starts a real multi-node Ray cluster on this machine (a head node and
# NUM_WORKERS worker nodes, each its own `ray start`), runs both trainings, prints the
# comparison and stops the cluster it started, whatever happens.
#
# Usage: ./scripts/run-benchmark.sh [--full] [--smoke-test] [--help]
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
#   RESULTS_DIR=results  where the JSON results and the comparison go
#   RAY_ADDRESS=         use this running Ray cluster (host:port) instead of starting one;
#                        it is never stopped by this script
#   RAY_PORT=6380        head port of the local cluster
#   DASHBOARD_PORT=8265  dashboard port of the local cluster
#   PIN_CPUS=auto        pin local worker nodes and the baseline to their own cores (auto, 1, 0)
#
# --full runs the whole CIFAR-10 for 10 epochs (hours on a laptop); --smoke-test runs a
# tiny one-epoch version of everything in about a minute.
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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
RAY_ADDRESS="${RAY_ADDRESS:-}"
# Whether the user pointed us at a cluster of theirs (never started or stopped here).
EXISTING_CLUSTER="${RAY_ADDRESS:+1}"
RAY_PORT="${RAY_PORT:-6380}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
PIN_CPUS="${PIN_CPUS:-auto}"
PYTHON="$REPO_ROOT/.venv/bin/python"
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
  local epochs=3 batch=64 dataset=synthetic train=4096 test=1024
  case "$MODE" in
    full) epochs=10 dataset=cifar10 train=50000 test=10000 ;;
    smoke) epochs=1 batch=32 train=256 test=128 ;;
  esac
  EPOCHS="${EPOCHS:-$epochs}"
  BATCH_SIZE="${BATCH_SIZE:-$batch}"
  DATASET="${DATASET:-$dataset}"
  TRAIN_SIZE="${TRAIN_SIZE:-$train}"
  TEST_SIZE="${TEST_SIZE:-$test}"
  require_one_of TARGET "$TARGET" auto local minikube
  require_one_of DATASET "$DATASET" synthetic cifar10
  require_positive_int EPOCHS "$EPOCHS"
  require_positive_int BATCH_SIZE "$BATCH_SIZE"
  require_positive_int TRAIN_SIZE "$TRAIN_SIZE"
  require_positive_int TEST_SIZE "$TEST_SIZE"
  [[ -z "$NUM_WORKERS" ]] || require_positive_int NUM_WORKERS "$NUM_WORKERS"
  [[ -z "$CPUS_PER_WORKER" ]] || require_positive_int CPUS_PER_WORKER "$CPUS_PER_WORKER"
  require_positive_int RAY_PORT "$RAY_PORT"
  require_positive_int DASHBOARD_PORT "$DASHBOARD_PORT"
  require_one_of PIN_CPUS "$PIN_CPUS" auto 0 1
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
  if ((CLUSTER_STARTED == 1)); then
    CLUSTER_STARTED=0
    NUM_WORKERS="$NUM_WORKERS" RAY_PORT="$RAY_PORT" "$REPO_ROOT/scripts/local-cluster.sh" stop || true
  fi
  exit "$status"
}

# Start the local multi-node cluster, or use the one at RAY_ADDRESS.
start_local_cluster() {
  if [[ -n "$EXISTING_CLUSTER" ]]; then
    log "Using the running Ray cluster at $RAY_ADDRESS (it will be left running)."
    export RAY_ADDRESS
    return 0
  fi
  CLUSTER_STARTED=1
  NUM_WORKERS="$NUM_WORKERS" CPUS_PER_WORKER="$CPUS_PER_WORKER" RAY_PORT="$RAY_PORT" \
    DASHBOARD_PORT="$DASHBOARD_PORT" PIN_CPUS="$PIN_CPUS" \
    "$REPO_ROOT/scripts/local-cluster.sh" start || {
    CLUSTER_STARTED=0
    die "Could not start the local Ray cluster (see the message above)."
  }
  eval "$(RAY_PORT="$RAY_PORT" "$REPO_ROOT/scripts/local-cluster.sh" env)"
  log "Dashboard: http://127.0.0.1:$DASHBOARD_PORT (open it while training runs)"
}

# The flags both trainings share (in the array COMMON_FLAGS; bash 3.2 has no mapfile).
set_common_flags() {
  COMMON_FLAGS=(--dataset "$DATASET" --train-size "$TRAIN_SIZE" --test-size "$TEST_SIZE"
    --epochs "$EPOCHS" --data-dir "$DATA_DIR" --results-dir "$RESULTS_DIR")
}

# Plain Keras in one process with the budget of one Ray worker and the Ray run's global batch.
run_baseline() {
  local pin=()
  if [[ "$PIN_CPUS" == 1 || ("$PIN_CPUS" == auto && -z "$EXISTING_CLUSTER") ]] && command -v taskset >/dev/null 2>&1; then
    pin=(taskset -c "0-$((CPUS_PER_WORKER - 1))")
  fi
  log "1/3 Baseline: plain Keras, $CPUS_PER_WORKER CPU(s), batch $((BATCH_SIZE * NUM_WORKERS))"
  set_common_flags
  ${pin[@]+"${pin[@]}"} "$PYTHON" -m training.baseline_training "${COMMON_FLAGS[@]}" \
    --batch-size "$((BATCH_SIZE * NUM_WORKERS))" --cpus "$CPUS_PER_WORKER" ||
    die "The baseline training failed (see above)."
}

# Ray Train with NUM_WORKERS workers on the cluster.
run_ray() {
  log "2/3 Ray Train: $NUM_WORKERS workers x $CPUS_PER_WORKER CPU(s), batch $BATCH_SIZE per worker"
  set_common_flags
  "$PYTHON" -m training.ray_training "${COMMON_FLAGS[@]}" --batch-size "$BATCH_SIZE" \
    --num-workers "$NUM_WORKERS" --cpus-per-worker "$CPUS_PER_WORKER" --address "$RAY_ADDRESS" ||
    die "The Ray training failed (see above)."
}

# Turn the two results into speedup, efficiency, throughput and accuracy.
run_compare() {
  log "3/3 Comparison"
  "$PYTHON" -m training.compare --results-dir "$RESULTS_DIR" --num-workers "$NUM_WORKERS" ||
    die "The comparison failed (see above)."
  log "Results: $RESULTS_DIR/baseline_results.json, $RESULTS_DIR/ray_results_${NUM_WORKERS}workers.json, $RESULTS_DIR/comparison.json"
}

# The whole local benchmark.
run_local_target() {
  NUM_WORKERS="${NUM_WORKERS:-2}"
  CPUS_PER_WORKER="${CPUS_PER_WORKER:-1}"
  print_settings
  check_results_dir
  ensure_venv requirements.txt
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  start_local_cluster
  run_baseline
  run_ray
  run_compare
}

main() {
  parse_flags "$@"
  resolve_settings
  choose_target
  if [[ "$TARGET" == "minikube" ]]; then
    print_settings
    check_results_dir
    ensure_venv requirements.txt
    export NUM_WORKERS CPUS_PER_WORKER EPOCHS BATCH_SIZE DATASET TRAIN_SIZE TEST_SIZE RESULTS_DIR
    run_minikube_target
  else
    run_local_target
  fi
}

main "$@"
