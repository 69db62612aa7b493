#!/usr/bin/env bash
# Grafana for the local cluster's monitoring (monitoring.sh sources this file): find it when
# it is installed, and start it provisioned with the run's Prometheus, Ray's dashboards and
# ours (monitoring/grafana/), its state in the run folder. GRAFANA_PORT and GRAFANA_HOME are
# monitoring.sh's settings.

# The command that starts Grafana's server (grafana-server, or `grafana server` of newer
# releases), in GRAFANA_COMMAND; false when Grafana is not installed.
find_grafana() {
  if command -v grafana-server >/dev/null 2>&1; then
    GRAFANA_COMMAND=(grafana-server)
  elif command -v grafana >/dev/null 2>&1; then
    GRAFANA_COMMAND=(grafana server)
  else
    return 1
  fi
}

# Grafana's home folder: GRAFANA_HOME, or the first of the usual places holding
# conf/defaults.ini (beside the binary for a tarball, share/grafana for packages and brew).
find_grafana_home() {
  local binary candidate
  if [[ -n "$GRAFANA_HOME" ]]; then
    [[ -f "$GRAFANA_HOME/conf/defaults.ini" ]] || return 1
    echo "$GRAFANA_HOME"
    return 0
  fi
  binary="$(command -v "${GRAFANA_COMMAND[0]}")"
  binary="$(readlink -f "$binary" 2>/dev/null || echo "$binary")"
  for candidate in "$(dirname "$binary")/.." "$(dirname "$binary")/../share/grafana" /usr/share/grafana \
    /usr/local/share/grafana /opt/homebrew/opt/grafana/share/grafana /usr/local/opt/grafana/share/grafana; do
    if [[ -f "$candidate/conf/defaults.ini" ]]; then
      (cd "$candidate" && pwd)
      return 0
    fi
  done
  return 1
}

# Grafana, when installed, provisioned with this run's Prometheus, Ray's dashboards (generated
# by the head in its session folder) and ours (monitoring/grafana/); its state in the run folder.
start_grafana() {
  local session_dir="$1" home grafana_dir
  if ((${#GRAFANA_COMMAND[@]} == 0)); then
    log "Grafana is not installed: REPORT.md draws the time series from Prometheus instead. For Grafana and the charts in the Ray dashboard, install it (https://grafana.com/docs/grafana/latest/setup-grafana/installation/) and run again."
    return 0
  fi
  if ! home="$(find_grafana_home)"; then
    warn "MONITORING=1: Grafana's home folder (the one holding conf/defaults.ini) was not found; Grafana is not started. Set GRAFANA_HOME to it."
    return 0
  fi
  grafana_dir="$MONITORING_DIR/grafana"
  mkdir -p "$grafana_dir/provisioning/datasources" "$grafana_dir/provisioning/dashboards" "$grafana_dir/data" "$grafana_dir/logs"
  # The data source is named Prometheus: the Ray dashboard's embedded panels ask for it by name.
  cat >"$grafana_dir/provisioning/datasources/prometheus.yml" <<EOF
apiVersion: 1
datasources:
  - name: Prometheus
    type: prometheus
    access: proxy
    url: http://127.0.0.1:$PROMETHEUS_PORT
    isDefault: true
EOF
  cat >"$grafana_dir/provisioning/dashboards/dashboards.yml" <<EOF
apiVersion: 1
providers:
  - name: Ray
    folder: Ray
    type: file
    options:
      path: $session_dir/metrics/grafana/dashboards
  - name: Data-parallel training
    folder: Data-parallel training
    type: file
    options:
      path: $REPO_ROOT/monitoring/grafana
EOF
  # Embedding and anonymous viewing, as in the grafana.ini that Ray generates.
  cat >"$grafana_dir/grafana.ini" <<EOF
[server]
http_addr = 127.0.0.1
http_port = $GRAFANA_PORT

[paths]
data = $grafana_dir/data
logs = $grafana_dir/logs
provisioning = $grafana_dir/provisioning

[security]
allow_embedding = true

[auth.anonymous]
enabled = true
org_name = Main Org.
org_role = Viewer

[analytics]
reporting_enabled = false
check_for_updates = false
EOF
  "${GRAFANA_COMMAND[@]}" --homepath "$home" --config "$grafana_dir/grafana.ini" >"$grafana_dir/grafana.log" 2>&1 &
  GRAFANA_PID=$!
  if ! wait_for_port "$GRAFANA_PORT" "$GRAFANA_PID" 60; then
    warn "MONITORING=1: Grafana did not start (see $grafana_dir/grafana.log); Prometheus and REPORT.md's time series still work."
    kill "$GRAFANA_PID" 2>/dev/null || true
    GRAFANA_PID=""
    return 0
  fi
  GRAFANA_URL="http://127.0.0.1:$GRAFANA_PORT"
  log "Grafana: $GRAFANA_URL (dashboard 'Data-parallel training', and Ray's); the Ray dashboard embeds its panels"
}
