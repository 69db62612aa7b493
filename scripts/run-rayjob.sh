#!/usr/bin/env bash
# The benchmark as a KubeRay RayJob: the operator starts a RayCluster from k8s/ray-cluster.yaml's
# spec, runs the baseline, the Ray training, the comparison and the report in it (the commands
# of TARGET=minikube ./scripts/run-benchmark.sh), and deletes the cluster afterwards. This
# script submits k8s/ray-job.yaml filled in for this run, follows the job's logs, copies the
# run folder back into a new results/<date-time>-minikube-rayjob/ folder (JSON, REPORT.md,
# plots; results/latest points at it) and deletes the RayJob. Ctrl-C deletes the RayJob, which
# stops the training with its cluster.
#
# Usage: ./scripts/run-rayjob.sh [--full] [--smoke-test] [--dry-run] [--help]
#   --dry-run            print the RayJob this run would submit, and nothing else
#   JOB=benchmark        or tune: the job runs ./scripts/run-tune.sh's search instead (its
#                        settings WAYS, LEARNING_RATES, GLOBAL_BATCHES; TUNE.md comes back)
#   TARGET=minikube      the target (scripts/targets/): minikube, or rehearsal (maintainers,
#                        Linux, root: the RayJob from a submitter pod of the rehearsed pods)
#   RECIPE: the training recipe (lesson/recipe.py), as for run-benchmark.sh:
#   An empty NUM_WORKERS is the worker replicas of k8s/ray-cluster.yaml, and at most that many.
#   RESULTS_DIR=results  the run folder goes there, as with run-benchmark.sh
#   START_TIMEOUT=900    seconds for the RayJob's cluster to start and the job to run; on a
#                        time-out the script says what each pod waits for
#   KEEP_RAYJOB=0        1: leave the RayJob after copying the results (its cluster is deleted
#                        ttlSecondsAfterFinished after the end, see k8s/ray-job.yaml)
#   POLL_INTERVAL=5      seconds between two looks at the RayJob
#   MINIKUBE_PROFILE=minikube RAY_NAMESPACE=default ALLOW_ANY_CONTEXT=0 (scripts/lib/k8s.sh)
# Needs what ./scripts/install-ray.sh installs (the operator, the image on every node), but
# not its RayCluster: the two clusters would not fit the nodes' memory.
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

COMMAND_FLAGS=("${MODE_FLAGS[@]}" --dry-run DRY_RUN=1)
TARGET="${TARGET:-minikube}"
# shellcheck disable=SC2034 # read by the target (scripts/lib/rayjob.sh)
DRY_RUN=0
RESULTS_DIR="${RESULTS_DIR:-$REPO_ROOT/results}"
START_TIMEOUT="${START_TIMEOUT:-900}"
KEEP_RAYJOB="${KEEP_RAYJOB:-0}"
POLL_INTERVAL="${POLL_INTERVAL:-5}"
RUN_DIR=""
INTERRUPTED=""

# Stop what the target started (an active RayJob) and mark the run folder (on every exit).
cleanup() {
  local status=$?
  target_stop
  close_run_dir "$status" "$RUN_DIR" 1
  exit "$status"
}

main() {
  parse_common_flags "$@"
  require_one_of JOB "${JOB:-benchmark}" benchmark tune
  if [[ "${JOB:-benchmark}" == tune ]]; then
    resolve_tune_recipe "$MODE"
  else
    resolve_recipe "$MODE"
  fi
  require_positive_int START_TIMEOUT "$START_TIMEOUT"
  require_one_of KEEP_RAYJOB "$KEEP_RAYJOB" 0 1
  load_target
  trap cleanup EXIT
  trap_interrupts
  target_run_rayjob
}

main "$@"
