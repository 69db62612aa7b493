#!/usr/bin/env bash
# Where the commands run: a target is one file in TARGETS_DIR (scripts/targets/ by default)
# that implements the same functions, and the commands that differ by target (run-benchmark.sh,
# run-tune.sh, open-dashboard.sh, run-rayjob.sh, experiments/chaos.sh) call those functions, never
# branching on the target's name. A new target is one new file there. Source it after common.sh.
#
# Each target defines (a target that cannot do one says so in words and fails):
#   target_available        0 when the target can run now; quiet; sets TARGET_REASON to why
#                           (or why not)
#   target_settings         logs the target's own settings, after the command's
#   target_benchmark_check  run-benchmark.sh: the checks before the run folder is made
#   target_benchmark        run-benchmark.sh: baseline, Ray run, comparison and report into
#                           RESULTS_DIR (the run folder)
#   target_tune_check       run-tune.sh: the checks before the run folder is made
#   target_tune             run-tune.sh: the Tune search and TUNE.md into RESULTS_DIR
#   target_chaos_check      chaos.sh: the checks; sets RUN_LOCATION (the run's storage)
#   target_chaos_start      chaos.sh: the cluster (started, or found and checked)
#   target_chaos_train FLAG...  chaos.sh: the checkpointed Ray run, in the background with
#                           FLAGs; sets TRAIN_PID
#   target_python ARGS...   Python where the cluster is (tools.chaos reads the run there)
#   target_chaos_victim NODE  chaos.sh: what runs Ray node NODE (CHAOS_VICTIM) and how it is
#                           killed (CHAOS_HOW)
#   target_chaos_kill NODE  chaos.sh: kill the victim
#   target_chaos_finish FILE  chaos.sh: the recovery report of results file FILE
#   target_open_dashboard   open-dashboard.sh
#   target_run_rayjob       run-rayjob.sh (and its --dry-run, DRY_RUN=1)
#   target_stop             for EXIT traps: stop what the target started; never fails
#
# load_target: validates TARGET (auto, or the name of a file in TARGETS_DIR), picks one for
# auto (the first of TARGET_ORDER that is available, then the other files by name), sources it
# and says why in TARGET_REASON.

TARGETS_DIR="${TARGETS_DIR:-$SCRIPTS_DIR/targets}"
# The order TARGET=auto tries: the Minikube cluster when install-ray.sh's RayCluster answers.
TARGET_ORDER="minikube local"
TARGET_REASON=""

# The targets in TARGETS_DIR, in the order auto tries them, one a line.
target_names() {
  local name path
  for name in $TARGET_ORDER; do
    [[ ! -f "$TARGETS_DIR/$name.sh" ]] || echo "$name"
  done
  for path in "$TARGETS_DIR"/*.sh; do
    [[ -f "$path" ]] || continue
    name="$(basename "$path" .sh)"
    [[ " $TARGET_ORDER " == *" $name "* ]] || echo "$name"
  done
}

# Source the target file of NAME.
source_target() {
  # shellcheck disable=SC1090 # the target is chosen at run time (TARGET)
  source "$TARGETS_DIR/$1.sh"
}

# Choose the target of TARGET and source it; see the header.
load_target() {
  local -a names=()
  local name reason skipped=""
  while IFS= read -r name; do names+=("$name"); done < <(target_names)
  ((${#names[@]} > 0)) || die "No target in TARGETS_DIR '$TARGETS_DIR' (a target is a file NAME.sh there)."
  local -a sorted=()
  while IFS= read -r name; do sorted+=("$name"); done < <(printf '%s\n' "${names[@]}" | sort)
  require_one_of TARGET "$TARGET" auto "${sorted[@]}"
  if [[ "$TARGET" != auto ]]; then
    source_target "$TARGET"
    TARGET_REASON="TARGET=$TARGET was asked for"
    return 0
  fi
  for name in "${names[@]}"; do
    # In a subshell: a target that is not chosen leaves nothing behind. Its TARGET_REASON says
    # why it is, or is not, available.
    reason="$(source_target "$name" && if target_available; then echo "yes $TARGET_REASON"; else echo "no $TARGET_REASON"; fi)"
    if [[ "$reason" == "yes "* ]]; then
      TARGET="$name"
      source_target "$name"
      TARGET_REASON="TARGET=auto: ${skipped:+$skipped; }${reason#yes }"
      return 0
    fi
    reason="${reason#no }"
    skipped="${skipped:+$skipped; }$name is not available${reason:+ ($reason)}"
  done
  die "TARGET=auto: no target is available ($skipped). Set TARGET to one of: ${names[*]}."
}

# Say which target runs and why, as the first line of a command's output.
announce_target() {
  echo "Target: $TARGET, because $TARGET_REASON."
}
