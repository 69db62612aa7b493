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
    run_step "$SCRIPTS_DIR/local-cluster.sh" start || {
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

# Refuse, before anything starts, more CPUs than this machine has cores: pinning could not
# give each worker its own core, and the run would measure oversubscription, not data
# parallelism. ALLOW_OVERSUBSCRIBE=1 lets an expert insist (REPORT.md then says so).
# Usage: require_cores WORKERS CPUS_PER_WORKER [NAME of the workers' setting, NUM_WORKERS]
require_cores() {
  local workers="$1" cpus="$2" setting="${3:-NUM_WORKERS}" cores
  cores="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 0)"
  ((cores > 0 && workers * cpus > cores)) || return 0
  if [[ "${ALLOW_OVERSUBSCRIBE:-0}" == 1 ]]; then
    warn "ALLOW_OVERSUBSCRIBE=1: $setting=$workers x CPUS_PER_WORKER=$cpus = $((workers * cpus)) CPUs on this machine's $cores cores; the comparison is oversubscribed."
    return 0
  fi
  die "$setting=$workers x CPUS_PER_WORKER=$cpus asks for $((workers * cpus)) CPUs, but this machine has $cores cores: the workers would share cores and the run would measure oversubscription, not data parallelism. Lower $setting or CPUS_PER_WORKER so that their product is at most $cores, or set ALLOW_OVERSUBSCRIBE=1 to insist."
}

# Refuse, before anything starts, a port that something already listens on, naming the
# setting that changes it. Usage: require_free_port NAME PORT WHAT-MAY-HOLD-IT
require_free_port() {
  local name="$1" port="$2" holder="$3"
  if address_answers "127.0.0.1:$port"; then
    die "Port $port is already taken ($holder). Stop what listens there, or choose a free port: $name=$((port + 1)) $0"
  fi
}

# Refuse a recipe whose data would not fit this machine's memory, before anything starts
# (harness/cluster_checks.py estimates it). Usage: require_memory MODE
require_memory() {
  local output
  recipe_mode_flag "$1"
  output="$(cd "$REPO_ROOT" && "$(settings_python)" -m harness.cluster_checks fits-machine \
    ${MODE_FLAG[@]+"${MODE_FLAG[@]}"} 2>&1)" || die "${output#cluster_checks: error: }"
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
