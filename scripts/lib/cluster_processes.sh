#!/usr/bin/env bash
# The processes of one local Ray cluster (local-cluster.sh): those started with its folder
# CLUSTER_DIR, those carrying its marker, and all their descendants, so that `stop` and
# `kill-node` touch exactly this cluster's processes. Source it after common.sh.

# Print every descendant of the given PIDs (children, their children, ...), one a line.
descendants_of() {
  local queue=("$@") pid child
  while ((${#queue[@]} > 0)); do
    pid="${queue[0]}"
    queue=("${queue[@]:1}")
    while read -r child; do
      [[ -n "$child" ]] || continue
      echo "$child"
      queue+=("$child")
    done < <(pgrep -P "$pid" || true)
  done
}

# PIDs of this cluster's processes: those started with our temp dir, their descendants,
# and (on Linux) any process carrying our marker in its environment.
cluster_pids() {
  local pids=() pid child
  while read -r pid; do [[ -n "$pid" ]] && pids+=("$pid"); done < <(pgrep -f -- "$CLUSTER_DIR/ray" || true)
  if [[ -d /proc ]]; then
    for pid in /proc/[0-9]*; do
      pid="${pid#/proc/}"
      if grep -qsz -- "^RAY_DEMO_CLUSTER_DIR=$CLUSTER_DIR\$" "/proc/$pid/environ" 2>/dev/null; then
        pids+=("$pid")
      fi
    done
  fi
  ((${#pids[@]} > 0)) || return 0
  while read -r child; do pids+=("$child"); done < <(descendants_of "${pids[@]}")
  printf '%s\n' "${pids[@]}" | sort -un | while read -r pid; do
    if [[ "$pid" != "$$" && "$pid" != "${BASHPID:-$$}" ]]; then
      echo "$pid"
    fi
  done
  return 0
}
