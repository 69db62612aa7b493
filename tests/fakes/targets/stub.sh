#!/usr/bin/env bash
# A target for the tests only (tests/test_targets.py): select it with TARGET=stub and
# TARGETS_DIR=tests/fakes/targets. Each function of a target (scripts/lib/targets.sh) appends
# its name and arguments to STUB_LOG and does the least its command needs to go on: the
# benchmark writes a file into its run folder, the chaos run is a short sleep whose progress
# says epoch 1 is checkpointed. STUB_AVAILABLE=1 makes target_available fail (auto then
# finds no target).

# shellcheck disable=SC2034 # the variables a target sets are read by the commands

STUB_LOG="${STUB_LOG:-${TMPDIR:-/tmp}/stub-target.log}"

# Record one call: the function's name and its arguments.
stub_record() {
  printf '%s\n' "$*" >>"$STUB_LOG"
}

target_available() {
  stub_record target_available
  TARGET_REASON="the stub target always answers"
  return "${STUB_AVAILABLE:-0}"
}

target_settings() {
  stub_record target_settings
}

target_benchmark_check() {
  stub_record target_benchmark_check
}

target_benchmark() {
  stub_record target_benchmark "NUM_WORKERS=$NUM_WORKERS" "EPOCHS=$EPOCHS" "${RECIPE_FLAGS[*]}"
  echo "stub" >"$RESULTS_DIR/stub.txt"
}

target_tune_check() {
  stub_record target_tune_check
}

target_tune() {
  stub_record target_tune "NUM_WORKERS=$NUM_WORKERS" "TRAIN_SIZE=$TRAIN_SIZE" "WAYS=${WAYS:-}"
  echo "stub" >"$RESULTS_DIR/stub.txt"
}

target_chaos_check() {
  stub_record target_chaos_check
  RUN_LOCATION="stub://$RUN_NAME"
}

target_chaos_start() {
  stub_record target_chaos_start
}

target_chaos_train() {
  stub_record target_chaos_train "$@"
  sleep 3 &
  TRAIN_PID=$!
}

target_python() {
  stub_record target_python "$@"
  # tools.chaos progress: epoch 1 is checkpointed, and the victim is Ray node 0123456789abcdef.
  [[ "$*" != *" progress "* ]] || echo "1 0123456789abcdef"
}

target_chaos_victim() {
  stub_record target_chaos_victim "$@"
  CHAOS_VICTIM="$1"
  CHAOS_HOW="the stub kills nothing"
}

target_chaos_kill() {
  stub_record target_chaos_kill "$@"
}

target_chaos_finish() {
  stub_record target_chaos_finish "$@"
}

target_open_dashboard() {
  stub_record target_open_dashboard
}

target_run_rayjob() {
  stub_record target_run_rayjob "DRY_RUN=$DRY_RUN"
}

target_stop() {
  stub_record target_stop
}
