#!/usr/bin/env bash
# Grafana's dashboards for the Minikube path (install-monitoring.sh): Ray's own, copied out of
# the running head pod, and ours, each a ConfigMap that Grafana's sidecar loads. Reads
# KUBE_CONTEXT, HEAD_POD, RAY_NAMESPACE, MONITORING_NAMESPACE, DEMO_LABEL and
# RAY_DASHBOARDS_DIR, OUR_DASHBOARD and the kube function; sets WORK_DIR, CURRENT_STEP and
# DASHBOARD_NAMES. Source it after
# common.sh and k8s.sh.

# shellcheck disable=SC2034 # set here, read by the script that sources this file

# Copy Ray's generated Grafana dashboards out of the head pod into WORK_DIR/dashboards.
copy_ray_dashboards() {
  CURRENT_STEP="copying Ray's dashboards out of the head pod"
  WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ray-dashboards.XXXXXX")"
  mkdir "$WORK_DIR/dashboards"
  if ! kube --namespace "$RAY_NAMESPACE" exec "$HEAD_POD" -c ray-head -- \
    tar -C "$RAY_DASHBOARDS_DIR" -cf - . >"$WORK_DIR/dashboards.tar" 2>"$WORK_DIR/exec.err"; then
    die "Could not copy Ray's Grafana dashboards out of the head pod $HEAD_POD ($RAY_DASHBOARDS_DIR): $(tr '\n' ' ' <"$WORK_DIR/exec.err")Ray writes them when its dashboard starts; see 'kubectl --context $KUBE_CONTEXT -n $RAY_NAMESPACE logs $HEAD_POD'."
  fi
  tar -xf "$WORK_DIR/dashboards.tar" -C "$WORK_DIR/dashboards" ||
    die "The copy of Ray's dashboards from $HEAD_POD is not a tar archive; run this script again."
  local -a found=("$WORK_DIR"/dashboards/*.json)
  if [[ ! -f "${found[0]}" ]]; then
    die "The head pod $HEAD_POD has no Grafana dashboards in $RAY_DASHBOARDS_DIR. Ray writes them when its dashboard starts (the image needs ray[default]); see 'kubectl --context $KUBE_CONTEXT -n $RAY_NAMESPACE logs $HEAD_POD'."
  fi
  log "Copied ${#found[@]} Grafana dashboards of Ray from $HEAD_POD."
}

# Create or update one dashboard's ConfigMap; Grafana's sidecar loads every ConfigMap
# labelled grafana_dashboard=1. Server-side apply: Ray's largest dashboard (about 0.5 MB)
# would not fit the annotation in which a client-side apply keeps the last applied object.
provision_dashboard() {
  local file="$1" name
  name="$(basename "$file" .json)"
  name="grafana-dashboard-${name%_grafana_dashboard}"
  name="$(printf '%s' "$name" | tr '[:upper:]_' '[:lower:]-' | tr -c 'a-z0-9-' '-')"
  kube --namespace "$MONITORING_NAMESPACE" create configmap "$name" \
    --from-file="$(basename "$file")=$file" --dry-run=client --output yaml |
    kube label --local --filename - grafana_dashboard=1 "$DEMO_LABEL" --output yaml |
    kube --namespace "$MONITORING_NAMESPACE" apply --server-side --force-conflicts \
      --field-manager install-monitoring --filename - >/dev/null ||
    die "Could not create the ConfigMap $name for Grafana from $file (output above)."
  DASHBOARD_NAMES+=("$name")
}

# Provision Ray's dashboards and ours.
provision_dashboards() {
  CURRENT_STEP="provisioning Grafana's dashboards"
  local file
  for file in "$WORK_DIR"/dashboards/*.json "$OUR_DASHBOARD"; do
    provision_dashboard "$file"
  done
  log "Grafana dashboards (ConfigMaps in namespace '$MONITORING_NAMESPACE'): ${DASHBOARD_NAMES[*]}"
}
