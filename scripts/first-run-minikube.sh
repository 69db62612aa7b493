#!/usr/bin/env bash
# A first real run of the whole Minikube path at smoke size, in one command that explains
# itself. It runs the scripts the docs use, as they are, in their order: the preflight checks,
# a 2-node minikube profile, KubeRay and the RayCluster, the benchmark in its head pod, the
# same benchmark as a RayJob (the RayCluster is deleted first: the two clusters do not fit the
# nodes' memory together), the RayCluster back, Prometheus and Grafana, and the cleanup. Each
# step is timed; a table of step, seconds and result ends the run and is kept in its folder.
# When a step fails the run stops there, leaves the cluster as it is for inspection, and
# writes a diagnostics bundle with every secret masked (scripts/lib/diagnostics.sh): the
# failed step's output, the tools' versions, nodes, pods, events, and the logs of the
# operator, the Ray pods and minikube; the message names the step and the bundle.
#
# Usage: [RESULTS_DIR=results] [KEEP=0] [DELETE_CLUSTER=0] [DELETE_TIMEOUT=300] [LOG_LINES=200]
#        [MINIKUBE_PROFILE=minikube] [RAY_NAMESPACE=default] [RAY_CLUSTER_NAME=ray-training-cluster]
#        [OPERATOR_NAMESPACE=ray-system] ./scripts/first-run-minikube.sh [--help]
#   RESULTS_DIR=results  this run's folder is RESULTS_DIR/<YYYYmmdd-HHMMSS>-first-run/: timings.txt
#                        (the table), logs/ (each step's output as printed) and, after a
#                        failure, FAILED, diagnostics/ (SUMMARY.txt first) and diagnostics.tar.gz;
#                        the benchmark and the RayJob write their own run folders there too
#   KEEP=0               1: skip the last step, ./scripts/cleanup.sh: Ray and monitoring keep
#                        running (./scripts/open-dashboard.sh shows them)
#   DELETE_CLUSTER=0     1: the cleanup also deletes the minikube profile (cleanup.sh's setting)
#   DELETE_TIMEOUT=300   seconds for the RayCluster and its pods to go before the RayJob starts
#   LOG_LINES=200        lines of each log, and of the failed step's output, in the bundle
#   MINIKUBE_PROFILE, RAY_NAMESPACE, RAY_CLUSTER_NAME, OPERATOR_NAMESPACE: as for every
#                        Minikube script (scripts/lib/k8s.sh)
# The steps, each safe to re-run (so is this script after a fix):
#   preflight           ./scripts/preflight.sh
#   setup-minikube      ./scripts/setup-minikube.sh
#   install-ray         ./scripts/install-ray.sh
#   benchmark-smoke     TARGET=minikube ./scripts/run-benchmark.sh --smoke-test
#   delete-raycluster   kubectl delete raycluster ray-training-cluster (and wait for its pods)
#   rayjob-smoke        TARGET=minikube ./scripts/run-rayjob.sh --smoke-test
#   install-ray-again   ./scripts/install-ray.sh (the RayCluster back)
#   install-monitoring  ./scripts/install-monitoring.sh
#   cleanup             ./scripts/cleanup.sh (not with KEEP=1)
# Every other setting reaches the steps unchanged: NODE_CPUS and NODE_MEMORY of
# ./scripts/setup-minikube.sh, POD_READY_TIMEOUT of ./scripts/install-ray.sh, and so on.
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/k8s.sh
source "$SCRIPTS_DIR/lib/k8s.sh"
# shellcheck source=scripts/lib/run_dir.sh
source "$SCRIPTS_DIR/lib/run_dir.sh"
# shellcheck source=scripts/lib/diagnostics.sh
source "$SCRIPTS_DIR/lib/diagnostics.sh"

# Before the defaults below fill them in: an empty setting is refused, not defaulted.
refuse_empty_settings
load_k8s_settings
RESULTS_DIR="${RESULTS_DIR:-$REPO_ROOT/results}"
KEEP="${KEEP:-0}"
DELETE_CLUSTER="${DELETE_CLUSTER:-0}"
DELETE_TIMEOUT="${DELETE_TIMEOUT:-300}"
LOG_LINES="${LOG_LINES:-200}"
# The steps' own run folders go next to this one; RUN_DIR is this script's, not theirs.
export RESULTS_DIR DELETE_CLUSTER
export -n RUN_DIR 2>/dev/null || true
readonly STEPS=(preflight setup-minikube install-ray benchmark-smoke delete-raycluster rayjob-smoke
  install-ray-again install-monitoring cleanup)

RUN_DIR=""
INTERRUPTED=""
COMMAND=()
# Per step (same index as STEPS): seconds taken and result; the running step and its log.
STEP_SECONDS=()
STEP_RESULTS=()
CURRENT_INDEX=""
CURRENT_START=0
STEP_LOG=""
# The message of a failed step, said last (after the table).
FAILURE=""

# The command of one step, into COMMAND.
step_command() {
  case "$1" in
    preflight) COMMAND=("$SCRIPTS_DIR/preflight.sh") ;;
    setup-minikube) COMMAND=("$SCRIPTS_DIR/setup-minikube.sh") ;;
    install-ray | install-ray-again) COMMAND=("$SCRIPTS_DIR/install-ray.sh") ;;
    benchmark-smoke) COMMAND=(env TARGET=minikube "$SCRIPTS_DIR/run-benchmark.sh" --smoke-test) ;;
    # Foreground: kubectl returns once the operator has removed the pods, whose memory the
    # RayJob's cluster needs (docs/QUICK_REFERENCE.md).
    delete-raycluster)
      COMMAND=(kubectl --context "$MINIKUBE_PROFILE" --namespace "$RAY_NAMESPACE" delete raycluster
        "$RAY_CLUSTER_NAME" --ignore-not-found --cascade=foreground --timeout="${DELETE_TIMEOUT}s")
      ;;
    rayjob-smoke) COMMAND=(env TARGET=minikube "$SCRIPTS_DIR/run-rayjob.sh" --smoke-test) ;;
    install-monitoring) COMMAND=("$SCRIPTS_DIR/install-monitoring.sh") ;;
    cleanup) COMMAND=("$SCRIPTS_DIR/cleanup.sh") ;;
  esac
}

# A command as the docs write it: ./scripts/X.sh, settings first, no `env`.
shown() {
  local text="$1"
  text="${text//"$REPO_ROOT"\//./}"
  printf '%s\n' "${text#env }"
}

# Run step INDEX, timed, its output to the terminal and to its log; returns its exit status.
run_one() {
  local index="$1" name="${STEPS[$1]}" status=0
  step_command "$name"
  STEP_LOG="$RUN_DIR/logs/$(printf '%02d' $((index + 1)))-$name.log"
  log "Step $((index + 1))/${#STEPS[@]}, $name: $(shown "${COMMAND[*]}")"
  CURRENT_INDEX="$index"
  CURRENT_START=$SECONDS
  # A child that a signal stops at once (run_step); tee -i outlives a Ctrl-C, so the log keeps
  # what the step says while it cleans up.
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  run_step bash -c 'set -o pipefail; log="$1"; shift; "$@" 2>&1 | tee -i "$log"' \
    step "$STEP_LOG" "${COMMAND[@]}" || status=$?
  STEP_SECONDS[index]=$((SECONDS - CURRENT_START))
  CURRENT_INDEX=""
  if ((status == 0)); then
    STEP_RESULTS[index]="ok"
  else
    STEP_RESULTS[index]="FAILED (exit $status)"
  fi
  return "$status"
}

# Stop at the failed step INDEX: write the diagnostics bundle and keep the message for the end.
fail_at() {
  local index="$1" status="$2" name="${STEPS[$1]}" command bundle="$RUN_DIR/diagnostics"
  command="$(shown "${COMMAND[*]}")"
  log "Step $name failed (exit status $status). Collecting diagnostics into $bundle"
  write_diagnostics "$bundle" "$name" "$status" "$command" "$STEP_LOG" "$LOG_LINES"
  FAILURE="Step $((index + 1))/${#STEPS[@]}, $name, failed (exit status $status): $command. Its output is above and in $STEP_LOG. Diagnostics, secrets masked: $bundle/ (SUMMARY.txt first; $bundle.tar.gz to attach to an issue). The cluster is left as it is for inspection: fix what the step names and run $0 again (the steps that passed notice what exists), or remove it all with ./scripts/cleanup.sh."
  exit 1
}

# The table of step, seconds and result; a step never reached says "not run".
print_table() {
  local index total=0
  printf '%-20s %8s  %s\n' step seconds result
  for index in "${!STEPS[@]}"; do
    printf '%-20s %8s  %s\n' "${STEPS[index]}" "${STEP_SECONDS[index]:--}" "${STEP_RESULTS[index]:-not run}"
    total=$((total + ${STEP_SECONDS[index]:-0}))
  done
  printf '%-20s %8s\n' total "$total"
}

# On every exit: stop a running step, print the table and keep it, mark the run folder.
finish() {
  local status=$?
  ignore_interrupts
  if [[ -n "$CURRENT_INDEX" ]]; then
    STEP_SECONDS[CURRENT_INDEX]=$((SECONDS - CURRENT_START))
    STEP_RESULTS[CURRENT_INDEX]="interrupted (${INTERRUPTED:-exit status $status})"
  fi
  printf '\n'
  print_table | tee "$RUN_DIR/timings.txt"
  log "The table is kept in $RUN_DIR/timings.txt; each step's output in $RUN_DIR/logs/"
  if ((status == 0)); then
    log "Every step passed. The benchmark's and the RayJob's results are in their own run folders in $RESULTS_DIR (latest: the RayJob's)."
    if [[ "$KEEP" == "1" ]]; then
      log "KEEP=1: Ray and monitoring keep running. See them: ./scripts/open-dashboard.sh   Remove them: ./scripts/cleanup.sh"
    fi
  fi
  [[ -z "$FAILURE" ]] || LAST_ERROR="$FAILURE"
  close_run_dir "$status" "$RUN_DIR" 0
  [[ -z "$FAILURE" ]] || die "$FAILURE"
  exit "$status"
}

main() {
  parse_common_flags "$@"
  require_one_of KEEP "$KEEP" 0 1
  require_one_of DELETE_CLUSTER "$DELETE_CLUSTER" 0 1
  require_positive_int DELETE_TIMEOUT "$DELETE_TIMEOUT"
  require_positive_int LOG_LINES "$LOG_LINES"
  log "Settings:"
  log_settings RESULTS_DIR KEEP DELETE_CLUSTER DELETE_TIMEOUT LOG_LINES MINIKUBE_PROFILE RAY_NAMESPACE RAY_CLUSTER_NAME OPERATOR_NAMESPACE
  new_run_dir "$RESULTS_DIR" first-run
  mkdir -p "$RUN_DIR/logs" || die "Could not create $RUN_DIR/logs. Set RESULTS_DIR to a writable folder."
  trap finish EXIT
  trap_interrupts
  log "This run's folder: $RUN_DIR"
  local index status
  for index in "${!STEPS[@]}"; do
    if [[ "${STEPS[index]}" == cleanup && "$KEEP" == "1" ]]; then
      STEP_RESULTS[index]="skipped (KEEP=1)"
      continue
    fi
    status=0
    run_one "$index" || status=$?
    ((status == 0)) || fail_at "$index" "$status"
  done
}

main "$@"
