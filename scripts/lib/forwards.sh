#!/usr/bin/env bash
# Port-forwards of the Minikube target's dashboards (open-dashboard.sh): the Ray dashboard
# of the head's Service, and Grafana and Prometheus when ./scripts/install-monitoring.sh has
# installed them, each with `kubectl port-forward` (no NodePort tunnel, so it works the same
# on Linux, macOS and Windows). Reads KUBE_CONTEXT, DASHBOARD_PORT, HEAD_SERVICE, GRAFANA_PORT,
# PROMETHEUS_PORT and FORWARD_TIMEOUT. Source it after common.sh and k8s.sh.

# The forwards, one "NAME|NAMESPACE|RESOURCE|LOCAL PORT|REMOTE PORT|PATH|SETTING OF THE LOCAL
# PORT" each: the Ray dashboard, then Grafana and Prometheus when they are installed.
FORWARDS=()
MONITORING_FORWARDS=0
FORWARD_PIDS=()
FORWARD_LOGS=()

# Stop every forward open_forwards started (for EXIT traps; never fails).
stop_forwards() {
  local pid
  for pid in ${FORWARD_PIDS[@]+"${FORWARD_PIDS[@]}"}; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  rm -f ${FORWARD_LOGS[@]+"${FORWARD_LOGS[@]}"}
}

# Start one forward in the background and wait until kubectl says it listens.
start_forward() {
  local name="$1" namespace="$2" resource="$3" local_port="$4" remote_port="$5" url_path="$6" setting="$7"
  local log_file pid deadline
  if address_answers "127.0.0.1:$local_port"; then
    die "Port $local_port on this machine is already taken (a local Ray dashboard, or another forward?), so the $name forward cannot use it. Free it, or choose another: $setting=$((local_port + 1)) $0"
  fi
  log_file="$(mktemp "${TMPDIR:-/tmp}/port-forward.XXXXXX")"
  FORWARD_LOGS+=("$log_file")
  kubectl --context "$KUBE_CONTEXT" --namespace "$namespace" port-forward "$resource" \
    "$local_port:$remote_port" >"$log_file" 2>&1 &
  pid=$!
  FORWARD_PIDS+=("$pid")
  deadline=$((SECONDS + ${FORWARD_TIMEOUT:-15}))
  until grep -q '^Forwarding from' "$log_file"; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      if [[ "$namespace" == "$MONITORING_NAMESPACE" ]]; then
        die "kubectl could not start the $name forward ($resource port $remote_port): $(tr '\n' ' ' <"$log_file")Are its pods up? 'kubectl --context $KUBE_CONTEXT -n $namespace get pods,svc' (./scripts/install-monitoring.sh installs them again)."
      fi
      die "kubectl could not start the $name forward ($resource port $remote_port): $(tr '\n' ' ' <"$log_file")Is the RayCluster up? 'kubectl --context $KUBE_CONTEXT -n $RAY_NAMESPACE get pods,svc -l ray.io/cluster=$RAY_CLUSTER_NAME' (a RayJob's: HEAD_SERVICE=<rayjob>-head-svc)."
    fi
    sleep 0.2
  done
  log "$name: http://127.0.0.1:$local_port$url_path"
}

# Add Grafana's and Prometheus' forwards when install-monitoring.sh has installed them.
add_monitoring_forwards() {
  local services
  services="$(kubectl --context "$KUBE_CONTEXT" --namespace "$MONITORING_NAMESPACE" get service \
    "$GRAFANA_SERVICE" "$PROMETHEUS_SERVICE" --output name 2>/dev/null || true)"
  if ! grep -qx "service/$GRAFANA_SERVICE" <<<"$services" || ! grep -qx "service/$PROMETHEUS_SERVICE" <<<"$services"; then
    log "Grafana and Prometheus are not installed in namespace '$MONITORING_NAMESPACE'; ./scripts/install-monitoring.sh installs them."
    return 0
  fi
  MONITORING_FORWARDS=1
  FORWARDS+=("Grafana|$MONITORING_NAMESPACE|svc/$GRAFANA_SERVICE|$GRAFANA_PORT|80|/|GRAFANA_PORT")
  FORWARDS+=("Prometheus|$MONITORING_NAMESPACE|svc/$PROMETHEUS_SERVICE|$PROMETHEUS_PORT|9090|/|PROMETHEUS_PORT")
  local iframe_port
  iframe_port="$(sed -n 's#^ *value: "http://127\.0\.0\.1:\([0-9][0-9]*\)"$#\1#p' "$REPO_ROOT/k8s/ray-cluster.yaml" | head -n 1)"
  if [[ -n "$iframe_port" && "$iframe_port" != "$GRAFANA_PORT" ]]; then
    warn "GRAFANA_PORT=$GRAFANA_PORT, but the Ray dashboard embeds Grafana's charts from 127.0.0.1:$iframe_port (RAY_GRAFANA_IFRAME_HOST in k8s/ray-cluster.yaml): its Metrics page will stay empty. Grafana itself works on $GRAFANA_PORT; to embed, set both to the same port and run ./scripts/install-ray.sh."
  fi
}

# Print the Grafana login: the admin password the chart generated, kept in a Secret.
print_grafana_login() {
  local password
  password="$(kubectl --context "$KUBE_CONTEXT" --namespace "$MONITORING_NAMESPACE" get secret "$GRAFANA_SERVICE" \
    --output 'jsonpath={.data.admin-password}' 2>/dev/null | base64 --decode 2>/dev/null || true)"
  if [[ -n "$password" ]]; then
    log "Grafana login: admin / $password (viewing needs no login; the dashboards are under Dashboards, ours is 'Data-parallel training')"
  else
    warn "Could not read Grafana's admin password; viewing needs no login. To read it: kubectl --context $KUBE_CONTEXT -n $MONITORING_NAMESPACE get secret $GRAFANA_SERVICE -o jsonpath='{.data.admin-password}' | base64 --decode"
  fi
}

# Forward the Ray dashboard, and Grafana and Prometheus when they are installed, from the
# cluster of KUBE_CONTEXT; keep them open until Ctrl-C.
open_forwards() {
  FORWARDS=("Ray dashboard|$RAY_NAMESPACE|svc/${HEAD_SERVICE:-$RAY_CLUSTER_NAME-head-svc}|$DASHBOARD_PORT|8265|/|DASHBOARD_PORT")
  add_monitoring_forwards
  trap 'log "Stopping the forward(s)."; exit 0' INT TERM
  local forward name namespace resource local_port remote_port url_path setting
  for forward in "${FORWARDS[@]}"; do
    IFS='|' read -r name namespace resource local_port remote_port url_path setting <<<"$forward"
    start_forward "$name" "$namespace" "$resource" "$local_port" "$remote_port" "$url_path" "$setting"
  done
  log "The RayCluster uses token authentication (authOptions in k8s/ray-cluster.yaml): when the dashboard asks for a token, paste the cluster's. Print it with: kubectl --context $KUBE_CONTEXT -n $RAY_NAMESPACE get secret $RAY_CLUSTER_NAME -o jsonpath='{.data.auth_token}' | base64 --decode"
  if ((MONITORING_FORWARDS == 1)); then
    print_grafana_login
  fi
  log "Keep this terminal open while you use the address(es) above; Ctrl-C stops the forward(s)."
  # Until a forward ends (its pod went away, say): then say so. (No `wait -n`: bash 3.2.)
  local pid
  while true; do
    for pid in "${FORWARD_PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || break 2
    done
    sleep 1
  done
  die "A port-forward ended (its pod restarted or went away; output: $(cat "${FORWARD_LOGS[@]}" | tail -n 3 | tr '\n' ' ')). Run ./scripts/open-dashboard.sh again."
}
