#!/usr/bin/env bash
# Run folders: each benchmark run writes into RESULTS_DIR/<YYYYmmdd-HHMMSS>-<suffix>/, never
# into an earlier run's folder; RESULTS_DIR/latest points at the last run that completed, and
# a failed or interrupted run's folder holds FAILED, saying why. Source it after common.sh.

# shellcheck disable=SC2034 # set here, read by the scripts that source this file

# shellcheck source=scripts/lib/steps.sh
source "$SCRIPTS_DIR/lib/steps.sh"

# Create a new run folder under ROOT and print its path; a second run in the same second
# gets -2, -3, ... (mkdir without -p fails on an existing folder, so none is reused).
create_run_dir() {
  local root="$1" suffix="$2" base candidate index=1
  mkdir -p "$root" 2>/dev/null || return 1
  base="$root/$(date +%Y%m%d-%H%M%S)-$suffix"
  candidate="$base"
  until mkdir "$candidate" 2>/dev/null; do
    [[ -d "$root" && -w "$root" ]] || return 1
    index=$((index + 1))
    candidate="$base-$index"
  done
  echo "$candidate"
}

# On exit: a completed run (status 0) moves ROOT/latest to RUN_DIR when UPDATE_LATEST is 1;
# a failed or interrupted one leaves RUN_DIR/FAILED naming the reason, and latest unmoved.
# Reads INTERRUPTED (set by the signal trap) and LAST_ERROR (set by die).
close_run_dir() {
  local status="$1" run_dir="$2" update_latest="$3" root reason
  [[ -n "$run_dir" && -d "$run_dir" ]] || return 0
  root="$(dirname "$run_dir")"
  if ((status == 0)); then
    ((update_latest == 1)) || return 0
    if [[ -e "$root/latest" && ! -L "$root/latest" ]]; then
      warn "$root/latest exists and is not a symlink; left alone. The results are in $run_dir"
      return 0
    fi
    # Relative, so the results folder can be moved or copied whole.
    ln -sfn "$(basename "$run_dir")" "$root/latest"
    log "Run complete: $run_dir ($root/latest points at it)"
    return 0
  fi
  if [[ -n "${INTERRUPTED:-}" ]]; then
    reason="Interrupted by $INTERRUPTED (exit status $status)."
  elif [[ -n "${LAST_ERROR:-}" ]]; then
    reason="$LAST_ERROR"
  else
    reason="Exited with status $status; see the output of the run."
  fi
  printf '%s\n' "$reason" >"$run_dir/FAILED" || true
  warn "This run did not complete: $run_dir is kept with a FAILED file saying why; $root/latest was not moved."
}

# A new run folder under ROOT (create_run_dir), in RUN_DIR; fails with what to do.
new_run_dir() {
  local root="$1" suffix="$2"
  RUN_DIR="$(create_run_dir "$root" "$suffix")" ||
    die "Could not create a run folder in RESULTS_DIR '$root'. Set RESULTS_DIR to a writable folder."
}

# Fail before any training when a results folder cannot be written.
# Usage: require_writable_dir NAME FOLDER
require_writable_dir() {
  local name="$1" folder="$2"
  mkdir -p "$folder" 2>/dev/null && [[ -w "$folder" ]] ||
    die "$name '$folder' cannot be created or written. Set $name to a writable folder."
}

# Fail before any training when a folder that only some runs write into (CHECKPOINT_DIR)
# could not be created or written, without creating it: its nearest existing folder must take
# a new folder (a probe of a unique name, removed at once, so that runs side by side agree).
# Usage: require_creatable_dir NAME FOLDER
require_creatable_dir() {
  local name="$1" folder="$2" parent probe
  parent="$folder"
  while [[ -n "$parent" && ! -e "$parent" ]]; do
    parent="$(dirname "$parent")"
  done
  if [[ -n "$folder" && -d "$parent" ]] && probe="$(mktemp -d "$parent/.write-probe.XXXXXX" 2>/dev/null)"; then
    rmdir "$probe"
    return 0
  fi
  die "$name '$folder' cannot be created or written. Set $name to a writable folder."
}

# From here on, Ctrl-C (SIGINT), SIGTERM (kill, timeout, a cancelled CI job) and SIGHUP (the
# terminal closed) end the script at once with 128 + the signal's number, and mark the run as
# interrupted by that signal (close_run_dir reads INTERRUPTED); the EXIT trap the caller set
# does the rest, and should begin with ignore_interrupts.
trap_interrupts() {
  trap 'INTERRUPTED=SIGINT; exit 130' INT
  trap 'INTERRUPTED=SIGTERM; exit 143' TERM
  trap 'INTERRUPTED=SIGHUP; exit 129' HUP
}

# In an EXIT trap: a second signal must not cut the cleanup short (SIGKILL still can), and
# the step that was running stops first (steps.sh).
ignore_interrupts() {
  trap '' INT TERM HUP
  stop_step
}
