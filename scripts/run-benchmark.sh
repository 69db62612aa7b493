#!/usr/bin/env bash
# Train the same CNN twice, plain Keras and Ray Train data-parallel, and compare them.
# The local target starts a real multi-node Ray cluster on this machine (a head node and
# NUM_WORKERS worker nodes, each its own `ray start`), runs both trainings, prints the
# comparison and stops the cluster it started, whatever happens; the minikube target runs
# them in the Ray head pod of ./scripts/install-ray.sh's RayCluster (scripts/targets/).
#
# Usage: ./scripts/run-benchmark.sh [--full] [--smoke-test] [--help]
#   PYTHON=python3.11    the Python 3.11 that creates .venv the first time
#   TARGET=auto          auto, local or minikube (auto: minikube when the RayCluster from
#                        ./scripts/install-ray.sh answers, else local); rehearsal, for
#                        maintainers on Linux as root: the Minikube pods rehearsed on this
#                        machine (scripts/experiments/rehearse-pods.sh, whose settings it
#                        passes on; docs/KUBERNETES.md)
#   RECIPE: the training recipe (lesson/recipe.py), each setting an environment variable:
#   On TARGET=minikube an unset NUM_WORKERS or CPUS_PER_WORKER is read from Ray's view of the
#   pods (every worker slot it has, the CPUs of its smallest worker pod).
#   DATA_DIR=.data       CIFAR-10 cache, or a folder holding cifar-10-batches-py
#   RESULTS_DIR=results  each run writes its results, comparison and REPORT.md into a new
#                        RESULTS_DIR/<YYYYmmdd-HHMMSS>-<target>/; RESULTS_DIR/latest points at
#                        the last run that completed; a failed run's folder holds FAILED
#   RUN_DIR=             write into this new folder instead, leaving latest alone
#                        (scripts/experiments/scaling-benchmark.sh uses it for each configuration)
#   BASELINE_RESULTS=    reuse this baseline_results.json instead of training the baseline
#                        (scripts/experiments/scaling-benchmark.sh's SINGLE_BASELINE=1 uses it)
#   RAY_ADDRESS=         use this running Ray cluster (host:port) instead of starting one;
#                        it is never stopped by this script
#   RAY_PORT=6380        head port of the local cluster
#   DASHBOARD_PORT=8265  dashboard port of the local cluster
#   PIN_CPUS=auto        pin local worker nodes and the baseline to their own cores (auto, 1, 0)
#   ALLOW_OVERSUBSCRIBE=0  1: let NUM_WORKERS x CPUS_PER_WORKER exceed this machine's cores on
#                        the local target (refused otherwise; REPORT.md then says so)
#   DEMO_ALLOCATOR=tuned how TensorFlow gets memory for tensors, the same for both runs:
#                        tuned (BFC allocator, glibc kept from trimming) or system (malloc);
#                        see lesson/workarounds.py, section 2
#   TENSORFLOW_ALONE=1   local target: also train the Ray run's recipe as NUM_WORKERS plain
#                        TensorFlow processes with TF_CONFIG by hand and no Ray (a control:
#                        what Ray costs on top of TensorFlow); 0 skips it
#   CHECKPOINT=0         1: the Ray run saves a checkpoint every epoch and a restarted worker
#                        group resumes from it (0, the default, keeps the quick start as fast)
#   CHECKPOINT_DIR=checkpoints  checkpoint storage every node reaches, created only by a run
#                        with checkpoints (local target; on minikube the runs go to the
#                        in-cluster store, K8S_CHECKPOINT_PATH=s3://ray-checkpoints/runs,
#                        that CHECKPOINTS=1 ./scripts/install-ray.sh installs;
#                        KEEP_RUNS=5 runs are kept there, older ones deleted)
#   RESUME=0             1: continue the latest interrupted Ray run in CHECKPOINT_DIR from its
#                        last checkpoint (same settings; the baseline runs again)
#   MONITORING=0         1 (local target): Prometheus scrapes the cluster into the run folder,
#                        Grafana starts when installed, REPORT.md plots the time series
#                        (docs/MONITORING.md); without prometheus the run goes on unmonitored
#   PROMETHEUS_PORT=9095 Prometheus' port for MONITORING=1
#   PROMETHEUS_SCRAPE_SECONDS=5  its scrape interval (--smoke-test: 2)
#   GRAFANA_PORT=3005    Grafana's port for MONITORING=1 (when Grafana is installed)
#   GRAFANA_HOME=        Grafana's home folder (holding conf/defaults.ini); found when empty
#
# --full runs the whole CIFAR-10 for 10 epochs (hours on a laptop); --smoke-test runs a
# tiny one-epoch version of everything (its time: docs/results/quickstart/, smoke runs of
# the test suite).
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

# Before the defaults below fill them in: an empty setting is refused, not defaulted.
refuse_empty_settings
COMMAND_FLAGS=("${MODE_FLAGS[@]}")
TARGET="${TARGET:-auto}"
DATA_DIR="${DATA_DIR:-$REPO_ROOT/.data}"
RESULTS_DIR="${RESULTS_DIR:-$REPO_ROOT/results}"
RUN_DIR="${RUN_DIR:-}"
# Whether the caller chose the run folder (then it, not this script, owns `latest`).
RUN_DIR_GIVEN="${RUN_DIR:+1}"
INTERRUPTED=""
RAY_PORT="${RAY_PORT:-6380}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
PIN_CPUS="${PIN_CPUS:-auto}"
BASELINE_RESULTS="${BASELINE_RESULTS:-}"
CHECKPOINT="${CHECKPOINT:-0}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-$REPO_ROOT/checkpoints}"
RESUME="${RESUME:-0}"

# Resolve the recipe of the chosen mode (lesson/recipe.py validates it) and check the rest;
# the target checks its own settings (the local one: MONITORING and its ports).
resolve_settings() {
  resolve_recipe "$MODE"
  require_port RAY_PORT "$RAY_PORT"
  require_port DASHBOARD_PORT "$DASHBOARD_PORT"
  require_one_of PIN_CPUS "$PIN_CPUS" auto 0 1
  require_int_between KEEP_RUNS "${KEEP_RUNS:-5}" 1 1000
  require_address RAY_ADDRESS "${RAY_ADDRESS:-}"
  if [[ -n "${PYTHON:-}" ]] && ! command -v "$PYTHON" >/dev/null 2>&1; then
    die "PYTHON='$PYTHON' is not a command. Point it at a Python 3.11 (for example PYTHON=python3.11), or unset it."
  fi
  require_one_of ALLOW_OVERSUBSCRIBE "${ALLOW_OVERSUBSCRIBE:-0}" 0 1
  require_one_of CHECKPOINT "$CHECKPOINT" 0 1
  require_one_of TENSORFLOW_ALONE "${TENSORFLOW_ALONE:-1}" 0 1
  require_one_of RESUME "$RESUME" 0 1
  require_one_of DEMO_ALLOCATOR "${DEMO_ALLOCATOR:-tuned}" tuned system
  require_writable_dir DATA_DIR "$DATA_DIR"
  require_creatable_dir CHECKPOINT_DIR "$CHECKPOINT_DIR"  # created by a run with checkpoints only
  if [[ -n "$BASELINE_RESULTS" && ! (-f "$BASELINE_RESULTS" && -r "$BASELINE_RESULTS") ]]; then
    die "BASELINE_RESULTS '$BASELINE_RESULTS' is not a readable file. Point it at a baseline_results.json, or leave it unset to train the baseline."
  fi
}

# Print the effective settings.
print_settings() {
  log "Settings: NUM_WORKERS=$NUM_WORKERS CPUS_PER_WORKER=$CPUS_PER_WORKER EPOCHS=$EPOCHS BATCH_SIZE=$BATCH_SIZE (per worker) DATASET=$DATASET TRAIN_SIZE=$TRAIN_SIZE TEST_SIZE=$TEST_SIZE RESULTS_DIR=$RESULTS_DIR"
  target_settings
}

# Stop what the target started and mark the run folder (runs on every exit).
cleanup() {
  local status=$?
  ignore_interrupts
  target_stop
  close_run_dir "$status" "$RUN_DIR" "$([[ -n "$RUN_DIR_GIVEN" ]] && echo 0 || echo 1)"
  exit "$status"
}

# Give this run a folder of its own and point RESULTS_DIR at it; from here on, a failure
# or an interrupt leaves a FAILED file there and stops what the target started.
start_run_dir() {
  if [[ -n "$RUN_DIR_GIVEN" ]]; then
    require_writable_dir RUN_DIR "$RUN_DIR"
    [[ -z "$(ls -A "$RUN_DIR")" ]] ||
      die "RUN_DIR '$RUN_DIR' already holds files: a run never overwrites another. Pick a new folder, or leave RUN_DIR unset."
  else
    local suffix="$TARGET"
    [[ "$MODE" == default ]] || suffix="$TARGET-$MODE"
    new_run_dir "$RESULTS_DIR" "$suffix"
  fi
  trap cleanup EXIT
  trap_interrupts
  RESULTS_DIR="$RUN_DIR"
  log "This run's folder: $RUN_DIR"
}

main() {
  parse_common_flags "$@"
  resolve_settings
  load_target
  announce_target
  print_settings
  require_writable_dir RESULTS_DIR "$RESULTS_DIR"
  target_benchmark_check
  start_run_dir
  target_benchmark
}

main "$@"
