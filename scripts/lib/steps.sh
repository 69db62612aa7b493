#!/usr/bin/env bash
# Long steps (a training, a cluster start, a nested script) as children that a signal can
# stop at once. Bash runs a trap only when the foreground command has ended, so a TERM or a
# HUP sent to a script alone would wait for the whole training before the cleanup ran;
# `run_step` runs the command in the background and waits for it, so the traps fire at once,
# and `stop_step` (from the EXIT trap) stops it and every process below it: SIGINT first (a
# Ray driver then marks its run interrupted, a script runs its own cleanup), then SIGTERM,
# then SIGKILL. Sourced by run_dir.sh.

# shellcheck source=scripts/lib/cluster_processes.sh
source "$SCRIPTS_DIR/lib/cluster_processes.sh"

STEP_PID=""
STEP_GRACE="${STEP_GRACE:-15}"

# Run a command (not a shell function) as the current step; returns its exit status.
run_step() {
  # SIGINT reset: Ctrl-C reaches a background child as it reaches a foreground one.
  (
    trap - INT QUIT
    exec "$@"
  ) &
  STEP_PID=$!
  local status=0
  wait "$STEP_PID" || status=$?
  STEP_PID=""
  return "$status"
}

# For EXIT traps: stop the current step and all its descendants, if one runs (never fails):
# SIGINT, then SIGTERM (a background child may ignore SIGINT), then SIGKILL, each after
# STEP_GRACE seconds.
stop_step() {
  local pid="$STEP_PID" signal deadline
  local -a tree=()
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  for signal in INT TERM KILL; do
    read -r -a tree <<<"${tree[*]} $pid $(descendants_of "$pid" | tr '\n' ' ')"
    kill -"$signal" "${tree[@]}" 2>/dev/null || true
    deadline=$((SECONDS + STEP_GRACE))
    while ((SECONDS < deadline)) && kill -0 "$pid" 2>/dev/null; do
      sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null || break
  done
  # What the step started and left (a child that outlived its parent) goes too.
  kill -KILL "${tree[@]}" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  STEP_PID=""
}
