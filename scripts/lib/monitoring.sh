#!/usr/bin/env bash
# Monitoring for the local cluster (MONITORING=1 ./scripts/run-benchmark.sh): a real Prometheus
# that scrapes every node of the cluster through the service-discovery file Ray writes in the
# head node's session folder, and Grafana, when it is installed, provisioned with Ray's
# dashboards and ours. Both keep their data in the run folder and stop with the cluster.
# The local target (scripts/targets/local.sh) sources this file after common.sh; it sources
# grafana.sh, its Grafana half. run-benchmark.sh's --help lists these settings too.
#
# Settings:
#   MONITORING=0         1: start Prometheus (and Grafana) for the run; prometheus missing
#                        from PATH: the run goes on without, and says how to install it
#   PROMETHEUS_PORT=9095 Prometheus' port on 127.0.0.1 (not 9090, where the Prometheus that a
#                        package installs as a service listens)
#   GRAFANA_PORT=3005    Grafana's port on 127.0.0.1 (not 3000, Grafana's service default)
#   PROMETHEUS_SCRAPE_SECONDS=5  how often Prometheus scrapes every node, and every Ray process
#                        exports its metrics (2 with --smoke-test, so that a one-minute run
#                        has points; each scrape costs the nodes' agents CPU: docs/MONITORING.md)
#   GRAFANA_HOME=        Grafana's home folder (the one holding conf/defaults.ini); found
#                        beside the grafana binary or in the usual places when empty
#
# The head node must start with RAY_PROMETHEUS_HOST, RAY_GRAFANA_HOST and
# RAY_GRAFANA_IFRAME_HOST in its environment for the Ray dashboard to embed Grafana's
# panels: prepare_monitoring exports them (and RAY_metrics_report_interval_ms, so that every
# process exports its metrics as often as Prometheus scrapes them, not every 10 s) before
# scripts/local-cluster.sh starts it.

# shellcheck source=scripts/lib/grafana.sh
source "$(dirname "${BASH_SOURCE[0]}")/grafana.sh"

MONITORING="${MONITORING:-0}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9095}"
GRAFANA_PORT="${GRAFANA_PORT:-3005}"
GRAFANA_HOME="${GRAFANA_HOME:-}"
PROMETHEUS_SCRAPE_SECONDS="${PROMETHEUS_SCRAPE_SECONDS:-}"
# Resolved by prepare_monitoring: PROMETHEUS_SCRAPE_SECONDS, else 2 for a smoke run and 5
# otherwise. Every scrape makes each node's agent render its ~400 series (about 30 ms of CPU
# on a worker node's own core): at 2 s that slowed the 2-core VM's Ray run by about 7%.
MONITORING_SCRAPE_SECONDS=""
MONITORING_DIR=""
MONITORING_STARTED_AT=""
PROMETHEUS_PID=""
GRAFANA_PID=""
GRAFANA_URL=""
GRAFANA_COMMAND=()
# How to get Prometheus, in every message that misses it.
PROMETHEUS_INSTALL="Debian/Ubuntu: 'sudo apt install prometheus'; macOS: 'brew install prometheus'"

# Fail on a bad MONITORING, PROMETHEUS_PORT or GRAFANA_PORT (with the other settings' checks).
check_monitoring_settings() {
  require_one_of MONITORING "$MONITORING" 0 1
  require_port PROMETHEUS_PORT "$PROMETHEUS_PORT"
  require_port GRAFANA_PORT "$GRAFANA_PORT"
  [[ -z "$PROMETHEUS_SCRAPE_SECONDS" ]] || require_int_between PROMETHEUS_SCRAPE_SECONDS "$PROMETHEUS_SCRAPE_SECONDS" 1 3600
  if [[ -n "${GRAFANA_HOME:-}" && ! -d "$GRAFANA_HOME" ]]; then
    die "GRAFANA_HOME='$GRAFANA_HOME' is not a folder. Point it at Grafana's home (its public/ and conf/), or unset it to look in the usual places."
  fi
}

# Before the cluster starts: find the tools, fail on a taken port, and export what the nodes
# need. Prometheus missing turns MONITORING off with a warning: never a failed run.
# Usage: prepare_monitoring RUN_DIR [MODE]   (MODE smoke: scrape every 2 s)
prepare_monitoring() {
  local run_dir="$1" mode="${2:-default}"
  [[ "$MONITORING" == 1 ]] || return 0
  MONITORING_SCRAPE_SECONDS="${PROMETHEUS_SCRAPE_SECONDS:-$([[ "$mode" == smoke ]] && echo 2 || echo 5)}"
  if ! command -v prometheus >/dev/null 2>&1; then
    warn "MONITORING=1: 'prometheus' is not installed or not on PATH, so this run goes on without monitoring. Install it ($PROMETHEUS_INSTALL) and run again for live metrics and the time series in REPORT.md."
    MONITORING=0
    return 0
  fi
  if address_answers "127.0.0.1:$PROMETHEUS_PORT"; then
    die "Prometheus port $PROMETHEUS_PORT is already taken (another Prometheus?). Choose a free one, e.g. PROMETHEUS_PORT=$((PROMETHEUS_PORT + 1)) MONITORING=1 $0, or run without MONITORING=1."
  fi
  MONITORING_DIR="$run_dir/monitoring"
  mkdir -p "$MONITORING_DIR" || die "Cannot create $MONITORING_DIR for Prometheus' data. Check that the run folder is writable."
  export RAY_PROMETHEUS_HOST="http://127.0.0.1:$PROMETHEUS_PORT"
  # Ray's default, 10 s, would leave a smoke run's workers ending before their first export.
  export RAY_metrics_report_interval_ms="$((MONITORING_SCRAPE_SECONDS * 1000))"
  if find_grafana; then
    if address_answers "127.0.0.1:$GRAFANA_PORT"; then
      die "Grafana port $GRAFANA_PORT is already taken (another Grafana?). Choose a free one, e.g. GRAFANA_PORT=$((GRAFANA_PORT + 1)) MONITORING=1 $0, or run without MONITORING=1."
    fi
    export RAY_GRAFANA_HOST="http://127.0.0.1:$GRAFANA_PORT"
    export RAY_GRAFANA_IFRAME_HOST="http://127.0.0.1:$GRAFANA_PORT"
  else
    GRAFANA_COMMAND=()
  fi
}

# The head node's session folder (where Ray writes the service-discovery file and its Grafana
# dashboards), resolved: the cluster folder is the one of the auth token local-cluster.sh made.
head_session_dir() {
  local cluster_dir session
  [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]] || return 1
  cluster_dir="$(dirname "$RAY_AUTH_TOKEN_PATH")"
  session="$cluster_dir/ray-head/session_latest"
  [[ -d "$session" ]] || return 1
  (cd "$session" && pwd -P)
}

# Wait up to SECONDS for something to listen on 127.0.0.1:PORT while process PID lives.
wait_for_port() {
  local port="$1" pid="$2" seconds="$3" deadline
  deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    address_answers "127.0.0.1:$port" && return 0
    sleep 0.5
  done
  return 1
}

# A JSON string of the argument (paths may hold quotes or backslashes).
json_string() {
  local value="${1//\\/\\\\}"
  printf '"%s"' "${value//\"/\\\"}"
}

# monitoring.json in the run folder: what analysis/monitoring_report.py reads. STOPPED is
# empty while the run goes on, else "clean" or "died" (Prometheus had died before the end).
write_monitoring_state() {
  local stopped="$1"
  {
    printf '{"prometheus_url": %s, "prometheus_pid": %s, ' "$(json_string "http://127.0.0.1:$PROMETHEUS_PORT")" "${PROMETHEUS_PID:-null}"
    printf '"started_at": %s, "scrape_interval_seconds": %s, ' "$MONITORING_STARTED_AT" "$MONITORING_SCRAPE_SECONDS"
    printf '"data_dir": "prometheus", "grafana_url": %s, ' "$([[ -n "$GRAFANA_URL" ]] && json_string "$GRAFANA_URL" || echo null)"
    if [[ -z "$stopped" ]]; then
      printf '"stopped_at": null, "stopped": null}\n'
    else
      printf '"stopped_at": %s, "stopped": %s}\n' "$(date +%s)" "$(json_string "$stopped")"
    fi
  } >"$MONITORING_DIR/monitoring.json"
}

# After the cluster starts: Prometheus on the head's service-discovery file, then Grafana.
# A Prometheus that does not start leaves the run going without monitoring.
start_monitoring() {
  [[ "$MONITORING" == 1 ]] || return 0
  local session_dir discovery deadline
  if ! session_dir="$(head_session_dir)"; then
    warn "MONITORING=1: the head node's session folder was not found (a cluster given by RAY_ADDRESS?), so this run goes on without monitoring. Leave RAY_ADDRESS unset: the cluster this script starts is monitored."
    MONITORING=0
    return 0
  fi
  # Ray's dashboard writes the file every 5 s, listing each live node's metrics port.
  discovery="$session_dir/prom_metrics_service_discovery.json"
  deadline=$((SECONDS + 30))
  until [[ -s "$discovery" ]] || ((SECONDS >= deadline)); do sleep 1; done
  if [[ ! -s "$discovery" ]]; then
    warn "MONITORING=1: Ray did not write $discovery within 30 s, so this run goes on without monitoring. Check the head's dashboard log in $session_dir/logs/dashboard.log"
    MONITORING=0
    return 0
  fi
  cat >"$MONITORING_DIR/prometheus.yml" <<EOF
# Written by scripts/lib/monitoring.sh: scrape every node of this run's Ray cluster, as listed
# in the service-discovery file the head node keeps up to date, every ${MONITORING_SCRAPE_SECONDS} s.
global:
  scrape_interval: ${MONITORING_SCRAPE_SECONDS}s
  scrape_timeout: ${MONITORING_SCRAPE_SECONDS}s
scrape_configs:
  - job_name: ray
    file_sd_configs:
      - files: ['$discovery']
        refresh_interval: 5s
  # Prometheus itself: what the monitoring costs shows in the report's CPU plot.
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:$PROMETHEUS_PORT']
EOF
  MONITORING_STARTED_AT="$(date +%s)"
  # A long retention: the report may re-open this data long after the run.
  prometheus --config.file="$MONITORING_DIR/prometheus.yml" --storage.tsdb.path="$MONITORING_DIR/prometheus" \
    --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
    >"$MONITORING_DIR/prometheus.log" 2>&1 &
  PROMETHEUS_PID=$!
  if ! wait_for_port "$PROMETHEUS_PORT" "$PROMETHEUS_PID" 30; then
    warn "MONITORING=1: Prometheus did not start (see $MONITORING_DIR/prometheus.log), so this run goes on without monitoring."
    kill "$PROMETHEUS_PID" 2>/dev/null || true
    PROMETHEUS_PID=""
    MONITORING=0
    return 0
  fi
  write_monitoring_state ""
  log "Prometheus: http://127.0.0.1:$PROMETHEUS_PORT scrapes the cluster's nodes every ${MONITORING_SCRAPE_SECONDS} s (targets from $discovery; data in $MONITORING_DIR)"
  start_grafana "$session_dir"
  write_monitoring_state ""
}

# Stop a process this file started: SIGTERM, then SIGKILL after 10 s. False when it had
# already exited.
stop_monitoring_process() {
  local pid="$1" deadline
  kill -0 "$pid" 2>/dev/null || return 1
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  return 0
}

# Stop Grafana and Prometheus if this run started them (for EXIT traps; never fails).
stop_monitoring() {
  if [[ -n "$GRAFANA_PID" ]]; then
    stop_monitoring_process "$GRAFANA_PID" || true
    GRAFANA_PID=""
  fi
  [[ -n "$PROMETHEUS_PID" ]] || return 0
  if stop_monitoring_process "$PROMETHEUS_PID"; then
    write_monitoring_state clean || true
    log "Prometheus stopped; its data stays in $MONITORING_DIR"
  else
    write_monitoring_state died || true
    warn "Prometheus had stopped before the end of the run (see $MONITORING_DIR/prometheus.log): the training went on, and its time series are incomplete."
  fi
  PROMETHEUS_PID=""
}
