#!/usr/bin/env bash
# Start, inspect or stop a real multi-node Ray cluster on this machine: one head node that
# offers no CPUs to training plus NUM_WORKERS worker nodes, each a separate `ray start`
# with CPUS_PER_WORKER CPUs, so that every Ray Train worker lands on a node of its own.
#
# Usage: ./scripts/local-cluster.sh start|stop|status|env|kill-node N|NODE_ID|--help
#   NUM_WORKERS=        worker nodes to start (empty: the recipe's, lesson/recipe.py)
#   CPUS_PER_WORKER=    CPUs each worker node offers to Ray (empty: the recipe's)
#   RAY_PORT=6380       head (GCS) port; not Ray's 6379, so a cluster of yours is left alone
#   DASHBOARD_PORT=8265 Ray dashboard port (http://127.0.0.1:DASHBOARD_PORT)
#   PIN_CPUS=auto       pin each worker node to its own core with taskset: auto (when the
#                       machine has a core per worker and taskset exists), 1 or 0
#   CLUSTER_DIR=/tmp/ray-demo-RAY_PORT  state: the nodes' temp dirs, logs, the auth token
#                       (kept short: Ray's socket paths must fit in 107 characters)
#   RAY_PROMETHEUS_HOST=, RAY_GRAFANA_HOST=, RAY_GRAFANA_IFRAME_HOST=  when set, the head
#                       node starts with them, and its dashboard reads Prometheus and embeds
#                       Grafana's panels (MONITORING=1 ./scripts/run-benchmark.sh sets them)
#
# `status` names each node (head, worker 1, ...) with its CPUs and cores, and the machine's
# memory once (tools/cluster_status.py); it exits 1 when no cluster of CLUSTER_DIR runs.
# `stop` stops only the processes of the cluster in CLUSTER_DIR, never another Ray cluster.
# `env` prints the exports a driver needs (address and auth) for `eval`.
# `kill-node` kills worker node N (1-NUM_WORKERS) or the node with that Ray node ID at once,
# as a crash would; it does not come back (scripts/experiments/chaos.sh uses it).
set -o errexit -o nounset -o pipefail

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/venv.sh
source "$SCRIPTS_DIR/lib/venv.sh"
# shellcheck source=scripts/lib/recipe.sh
source "$SCRIPTS_DIR/lib/recipe.sh"
# shellcheck source=scripts/lib/cluster_processes.sh
source "$SCRIPTS_DIR/lib/cluster_processes.sh"

NUM_WORKERS="${NUM_WORKERS:-}"
CPUS_PER_WORKER="${CPUS_PER_WORKER:-}"
RAY_PORT="${RAY_PORT:-6380}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
PIN_CPUS="${PIN_CPUS:-auto}"
CLUSTER_DIR="${CLUSTER_DIR:-/tmp/ray-demo-${RAY_PORT}}"
START_TIMEOUT="${START_TIMEOUT:-90}"

# The ray CLI of .venv (start creates .venv first, like the other scripts).
ray_cli() {
  "$REPO_ROOT/.venv/bin/ray" "$@"
}

# `ray start`, kept on loopback with no Ray Client server (harness/loopback.py says why).
ray_start() {
  "$REPO_ROOT/.venv/bin/python" -m harness.loopback start "$@"
}

# Environment every process of this cluster (and every driver) shares: the same token
# authentication, and a marker that lets `stop` find exactly this cluster's processes.
cluster_env() {
  export RAY_AUTH_MODE=token
  export RAY_AUTH_TOKEN_PATH="$CLUSTER_DIR/auth_token"
  export RAY_DEMO_CLUSTER_DIR="$CLUSTER_DIR"
  export RAY_ADDRESS="127.0.0.1:$RAY_PORT"
  export TF_USE_LEGACY_KERAS=1
  # Ray's client code then resolves 127.0.0.1 to itself, not to this machine's network
  # address, where none of this cluster's servers listens (harness/loopback.py).
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
  # Ray's usage-stats prompt and its network call are of no use here.
  export RAY_USAGE_STATS_ENABLED=0
  # Each node's log monitor globs for new log files on every pass (ten a second) while it
  # follows fewer than this many, else once half a second has passed: half its CPU, while
  # training too (docs/PERFORMANCE.md). Set to 1000, Ray's default, to compare.
  export RAY_LOG_MONITOR_MANY_FILES_THRESHOLD="${RAY_LOG_MONITOR_MANY_FILES_THRESHOLD:-0}"
}

# True when something listens on 127.0.0.1:PORT.
port_in_use() {
  address_answers "127.0.0.1:$1"
}

# Whether to pin worker nodes to cores.
should_pin() {
  case "$PIN_CPUS" in
    1) command -v taskset >/dev/null 2>&1 || die "PIN_CPUS=1 needs taskset (util-linux)." ;;
    0) return 1 ;;
    auto)
      command -v taskset >/dev/null 2>&1 || return 1
      local cores
      cores="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
      ((NUM_WORKERS * CPUS_PER_WORKER <= cores)) || return 1
      ;;
  esac
  return 0
}

# Start the head node (no CPUs for training) and the worker nodes.
start_cluster() {
  # The recipe's defaults fill an empty NUM_WORKERS or CPUS_PER_WORKER; Python checks them.
  resolve_recipe default
  require_port RAY_PORT "$RAY_PORT"
  require_port DASHBOARD_PORT "$DASHBOARD_PORT"
  require_one_of PIN_CPUS "$PIN_CPUS" auto 0 1
  if [[ -n "$(cluster_pids)" ]]; then
    die "A local cluster from $CLUSTER_DIR is already running. Stop it first: $0 stop"
  fi
  if [[ -d "$CLUSTER_DIR" ]]; then
    log "$CLUSTER_DIR is left from an earlier cluster whose processes are all gone: starting afresh in it."
  fi
  if port_in_use "$RAY_PORT"; then
    die "Port $RAY_PORT is already taken (another Ray cluster?). Stop that cluster, or choose a free port: RAY_PORT=6381 $0 start"
  fi
  if port_in_use "$DASHBOARD_PORT"; then
    die "Dashboard port $DASHBOARD_PORT is already taken (another Ray dashboard?). Choose a free one: DASHBOARD_PORT=8266 $0 start"
  fi
  mkdir -p "$CLUSTER_DIR" || die "Cannot create $CLUSTER_DIR. Set CLUSTER_DIR to a writable folder."
  ensure_venv requirements.txt
  cluster_env
  # A fresh random token per cluster; every node and driver of this cluster reads it.
  (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$RAY_AUTH_TOKEN_PATH")
  # Each node gets its own temp dir: nodes sharing one would each forward every worker's
  # log lines to the driver, printing each line once per node.
  log "Starting head node on 127.0.0.1:$RAY_PORT (0 CPUs for training), dashboard on port $DASHBOARD_PORT${RAY_PROMETHEUS_HOST:+, metrics from $RAY_PROMETHEUS_HOST}${RAY_GRAFANA_HOST:+, charts from $RAY_GRAFANA_HOST}"
  ray_start --head --node-ip-address=127.0.0.1 --port="$RAY_PORT" --num-cpus=0 \
    --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
    --temp-dir="$CLUSTER_DIR/ray-head" --disable-usage-stats >"$CLUSTER_DIR/head.log" 2>&1 ||
    die "The head node did not start; see $CLUSTER_DIR/head.log"
  local index pin_prefix=()
  for ((index = 1; index <= NUM_WORKERS; index++)); do
    pin_prefix=()
    if should_pin; then
      local first=$(((index - 1) * CPUS_PER_WORKER)) last=$((index * CPUS_PER_WORKER - 1))
      pin_prefix=(taskset -c "$first-$last")
    fi
    log "Starting worker node $index with $CPUS_PER_WORKER CPU(s)${pin_prefix[*]:+ pinned to cores $first-$last}"
    ${pin_prefix[@]+"${pin_prefix[@]}"} "$REPO_ROOT/.venv/bin/python" -m harness.loopback start \
      --address="127.0.0.1:$RAY_PORT" --node-ip-address=127.0.0.1 --num-cpus="$CPUS_PER_WORKER" \
      --resources="{\"worker_node_$index\": 1}" --temp-dir="$CLUSTER_DIR/ray-worker-$index" \
      --disable-usage-stats >"$CLUSTER_DIR/worker-$index.log" 2>&1 ||
      die "Worker node $index did not start; see $CLUSTER_DIR/worker-$index.log"
  done
  wait_for_nodes
  log "Cluster up: head + $NUM_WORKERS worker nodes. Dashboard: http://127.0.0.1:$DASHBOARD_PORT"
}

# Wait until the head sees every worker node with its CPUs.
wait_for_nodes() {
  local deadline=$((SECONDS + START_TIMEOUT)) cpus wanted=$((NUM_WORKERS * CPUS_PER_WORKER))
  while ((SECONDS < deadline)); do
    cpus="$(ray_cli status --address="127.0.0.1:$RAY_PORT" 2>/dev/null |
      sed -n 's#^ *[0-9.]*/\([0-9.]*\) CPU.*#\1#p' | head -n1)"
    if [[ -n "$cpus" ]] && (($(printf '%.0f' "$cpus") >= wanted)); then
      return 0
    fi
    sleep 1
  done
  die "The cluster did not reach $wanted CPUs within ${START_TIMEOUT}s; see the logs in $CLUSTER_DIR"
}

# Stop this cluster's processes: SIGTERM, then SIGKILL whatever is left after 10 s.
stop_cluster() {
  local pids
  pids="$(cluster_pids | tr '\n' ' ')"
  if [[ -z "${pids// /}" ]]; then
    log "No local cluster from $CLUSTER_DIR is running."
    return 0
  fi
  log "Stopping the local cluster in $CLUSTER_DIR"
  # shellcheck disable=SC2086 # word splitting of the PID list is intended
  kill -TERM $pids 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while ((SECONDS < deadline)) && [[ -n "$(cluster_pids)" ]]; do
    sleep 0.5
  done
  # SIGKILL what is left; a process that was still being started may show up late, so look
  # again, a few times.
  local round
  for round in 1 2 3 4 5; do
    pids="$(cluster_pids | tr '\n' ' ')"
    [[ -n "${pids// /}" ]] || break
    # shellcheck disable=SC2086 # word splitting of the PID list is intended
    kill -KILL $pids 2>/dev/null || true
    sleep "$round"
  done
  pids="$(cluster_pids | tr '\n' ' ')"
  [[ -z "${pids// /}" ]] || die "Processes of the cluster in $CLUSTER_DIR survived SIGKILL: $pids. See them with: ps -o pid,stat,args -p ${pids// /,}"
  log "Local cluster stopped."
}

# Kill one worker node like a crash: SIGKILL its raylet and every process of its temp dir,
# with all their children, at once. Never the head node.
kill_node() {
  local which="${1:-}" node_dir="" raylet pids=() pid child
  if [[ "$which" =~ ^[0-9]+$ ]]; then
    node_dir="$CLUSTER_DIR/ray-worker-$which/"
  elif [[ "$which" =~ ^[0-9a-f]{16,}$ ]]; then
    # The raylet's command line carries its node ID and names the node's temp dir.
    raylet="$(pgrep -f -- "--node_id=$which" | head -n1 || true)"
    if [[ -n "$raylet" ]]; then
      # -ww: never cut at the terminal's width (COLUMNS); the temp dir comes after the binary's path.
      node_dir="$(ps -ww -o args= -p "$raylet" | grep -o -- "$CLUSTER_DIR/ray-[a-z]*-*[0-9]*/" | head -n1 || true)"
    fi
    [[ -n "$node_dir" ]] || die "No node with ID $which runs in the local cluster of $CLUSTER_DIR. Check: $0 status"
  else
    die "kill-node needs a worker node number (1, 2, ...) or a Ray node ID, got '${which}'. Example: $0 kill-node 2"
  fi
  [[ "$node_dir" == */ray-worker-* ]] || die "Refusing to kill the head node ($node_dir): only worker nodes can be killed."
  while read -r pid; do [[ -n "$pid" ]] && pids+=("$pid"); done < <(pgrep -f -- "$node_dir" || true)
  ((${#pids[@]} > 0)) || die "Worker node ${node_dir%/} is not running. Check: $0 status"
  # Collect the children first: once the raylet dies they are re-parented and lost from view.
  while read -r child; do pids+=("$child"); done < <(descendants_of "${pids[@]}")
  log "Killing worker node $(basename "$node_dir") (SIGKILL to ${#pids[@]} processes)"
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

# Print the cluster's state.
show_status() {
  cluster_env
  if [[ -z "$(cluster_pids)" ]]; then
    log "No local cluster from $CLUSTER_DIR is running."
    return 1
  fi
  # Each node by name, its CPUs and cores, and the machine's memory once (tools/cluster_status.py);
  # Ray's own view, with anonymous node IDs, if that fails.
  "$REPO_ROOT/.venv/bin/python" -m tools.cluster_status || ray_cli status --address="127.0.0.1:$RAY_PORT"
}

main() {
  local command="${1:-}"
  case "$command" in
    start) start_cluster ;;
    stop) stop_cluster ;;
    status) show_status ;;
    kill-node) kill_node "${2:-}" ;;
    env)
      cluster_env
      printf 'export RAY_AUTH_MODE=%q RAY_AUTH_TOKEN_PATH=%q RAY_ADDRESS=%q TF_USE_LEGACY_KERAS=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0\n' \
        "$RAY_AUTH_MODE" "$RAY_AUTH_TOKEN_PATH" "$RAY_ADDRESS"
      ;;
    -h | --help | help) print_usage ;;
    *)
      print_usage >&2
      die "Unknown command '$command'. Use start, stop, status, env or kill-node."
      ;;
  esac
}

main "$@"
