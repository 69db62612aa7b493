#!/usr/bin/env bash
# Control of the local multi-node Ray cluster (scripts/local-cluster.sh) from the scripts that
# train on it: start it, reach it, stop it on exit. Source it after common.sh.

# Start the local multi-node cluster (local-cluster.sh) with WORKERS worker nodes, reading
# CPUS_PER_WORKER, RAY_PORT, DASHBOARD_PORT, PIN_CPUS (default auto) and CLUSTER_DIR (default:
# local-cluster.sh's); export what a driver needs to reach it. Sets CLUSTER_STARTED=1, so
# that the caller's EXIT trap can stop_started_cluster.
start_cluster_nodes() {
  local workers="$1"
  CLUSTER_STARTED=1
  NUM_WORKERS="$workers" CPUS_PER_WORKER="$CPUS_PER_WORKER" RAY_PORT="$RAY_PORT" \
    DASHBOARD_PORT="$DASHBOARD_PORT" PIN_CPUS="${PIN_CPUS:-auto}" CLUSTER_DIR="${CLUSTER_DIR:-}" \
    "$SCRIPTS_DIR/local-cluster.sh" start || {
    CLUSTER_STARTED=0
    die "Could not start the local Ray cluster (see the message above)."
  }
  eval "$(RAY_PORT="$RAY_PORT" CLUSTER_DIR="${CLUSTER_DIR:-}" "$SCRIPTS_DIR/local-cluster.sh" env)"
  log "Dashboard: http://127.0.0.1:$DASHBOARD_PORT (open it while training runs)"
}

# Stop the cluster start_cluster_nodes started, if it did (for EXIT traps; never fails).
stop_started_cluster() {
  if ((${CLUSTER_STARTED:-0} == 1)); then
    CLUSTER_STARTED=0
    RAY_PORT="$RAY_PORT" CLUSTER_DIR="${CLUSTER_DIR:-}" "$SCRIPTS_DIR/local-cluster.sh" stop || true
  fi
}

# Fail in seconds, before any training, when RAY_ADDRESS names a cluster that does not
# answer: usually one left exported by `eval "$(./scripts/local-cluster.sh env)"` and
# stopped since. Usage: check_existing_cluster ADDRESS (nothing: no cluster of the user's)
check_existing_cluster() {
  local address="$1"
  [[ -n "$address" ]] || return 0
  if [[ "$address" =~ ^[^/]+:[0-9]+$ ]] && ! address_answers "$address"; then
    die "RAY_ADDRESS=$address is set in your environment, but no Ray cluster answers there. It is probably left over from 'eval \"\$(./scripts/local-cluster.sh env)\"' for a cluster that has stopped since. Run 'unset RAY_ADDRESS' and this script starts a cluster of its own, or start the cluster at that address first."
  fi
}
