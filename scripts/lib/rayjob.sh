#!/usr/bin/env bash
# The benchmark as a KubeRay RayJob (run-rayjob.sh, on the Minikube target): k8s/ray-job.yaml
# filled in for this run, with k8s/ray-cluster.yaml's spec; submitted, followed, its run folder
# copied back, and deleted. Reads the recipe (resolve_recipe), RESULTS_DIR, START_TIMEOUT,
# KEEP_RAYJOB, POLL_INTERVAL and DRY_RUN. Source it after common.sh, k8s.sh, pod.sh and
# run_dir.sh.

JOB_MANIFEST="$REPO_ROOT/k8s/ray-job.yaml"
CLUSTER_MANIFEST="$REPO_ROOT/k8s/ray-cluster.yaml"
JOB_NAME="ray-training-benchmark-$(date +%Y%m%d-%H%M%S)"
POD_RUN_DIR="$POD_RESULTS_ROOT/$JOB_NAME"
# Set once the RayJob exists and until it has ended, so that an interrupt deletes it.
JOB_ACTIVE=0
# The RayJob's status: deployment status, job status, its RayCluster, reason, message.
JOB_DEPLOYMENT="" JOB_STATUS="" JOB_CLUSTER="" JOB_REASON="" JOB_MESSAGE=""

# The workers: as on the RayCluster, a worker per worker pod of the spec ('replicas' in
# k8s/ray-cluster.yaml), unless NUM_WORKERS asks for fewer; never more.
resolve_rayjob_workers() {
  local replicas
  replicas="$(manifest_worker_replicas)"
  if [[ -z "${GIVEN_NUM_WORKERS:-}" && "$replicas" =~ ^[0-9]+$ ]] && ((replicas >= 1)); then
    resolve_recipe "$MODE" "NUM_WORKERS=$replicas"
  fi
  if [[ "$replicas" =~ ^[0-9]+$ ]] && ((NUM_WORKERS > replicas)); then
    die "NUM_WORKERS=$NUM_WORKERS, but the RayJob's cluster has $replicas worker pod(s) ('replicas' in k8s/ray-cluster.yaml). Lower NUM_WORKERS or raise 'replicas' (the arithmetic at the top of that file says what fits)."
  fi
}

# The job's entrypoint: the four commands in one `bash -c '...'`. KubeRay puts it, as it is,
# into the submitter's shell command after `ray job submit --`, and `ray job submit` joins the
# words it gets with shlex.join; the single quotes keep the `&&` for the job's own shell.
job_entrypoint() {
  local -a commands=()
  if [[ "${JOB:-benchmark}" == tune ]]; then
    tune_args "$POD_RUN_DIR" --address auto
    commands+=("$(printf '%q ' python "${TRAINING_ARGS[@]}")")
    commands+=("$(printf '%q ' python -m analysis.tune_report --run-dir "$POD_RUN_DIR")")
  else
    training_args baseline "$POD_RUN_DIR"
    commands+=("$(printf '%q ' python "${TRAINING_ARGS[@]}")")
    training_args ray "$POD_RUN_DIR" --address auto
    commands+=("$(printf '%q ' python "${TRAINING_ARGS[@]}")")
    commands+=("$(printf '%q ' python -m analysis.compare --results-dir "$POD_RUN_DIR" --num-workers "$NUM_WORKERS")")
    commands+=("$(printf '%q ' python -m analysis.report --run-dir "$POD_RUN_DIR")")
  fi
  local joined="" command
  for command in "${commands[@]}"; do
    joined+="${joined:+&& }$command"
  done
  [[ "$joined" != *"'"* ]] || die "A training setting holds a single quote, which the RayJob's entrypoint cannot carry: $joined"
  printf "bash -c '%s'" "${joined% }"
}

# The files a finished job leaves in its run folder (JOB=benchmark or tune), one a word.
job_result_files() {
  if [[ "${JOB:-benchmark}" == tune ]]; then
    echo tune_results.json TUNE.md
  else
    echo baseline_results.json "ray_results_${NUM_WORKERS}workers.json" comparison.json REPORT.md
  fi
}

# k8s/ray-job.yaml with this run's name, entrypoint and k8s/ray-cluster.yaml's spec (less
# upgradeStrategy), on stdout. The entrypoint goes in as a YAML double-quoted string.
render_ray_job() {
  local entrypoint
  entrypoint="$(job_entrypoint)"
  entrypoint="${entrypoint//\\/\\\\}"
  entrypoint="\"${entrypoint//\"/\\\"}\""
  JOB_NAME="$JOB_NAME" ENTRYPOINT="$entrypoint" CLUSTER_FILE="$CLUSTER_MANIFEST" awk '
    # Print the cluster file'"'"'s spec, two spaces deeper, without its upgradeStrategy block.
    function cluster_spec(   line, in_spec, skipping) {
      while ((getline line < ENVIRON["CLUSTER_FILE"]) > 0) {
        if (line ~ /^spec:/) { in_spec = 1; continue }
        if (!in_spec) continue
        if (line ~ /^[^ #]/) break
        if (line ~ /^  upgradeStrategy:/) { skipping = 1; continue }
        if (skipping && line ~ /^    /) continue
        skipping = 0
        print (line == "" ? "" : "  " line)
      }
      close(ENVIRON["CLUSTER_FILE"])
    }
    /^  name: ray-training-benchmark$/ { print "  name: " ENVIRON["JOB_NAME"]; next }
    /^  entrypoint: / { print "  entrypoint: " ENVIRON["ENTRYPOINT"]; next }
    /^  rayClusterSpec: \{\}$/ { print "  rayClusterSpec:"; cluster_spec(); next }
    { print }
  ' "$JOB_MANIFEST"
}

# Check the tools, the context, the operator, and that the long-running RayCluster is gone.
check_rayjob_cluster() {
  require_tool kubectl "https://kubernetes.io/docs/tasks/tools/"
  require_minikube_context
  KUBE_CONTEXT="$(current_kube_context)"
  kubectl --context "$KUBE_CONTEXT" --request-timeout=10s get crd rayjobs.ray.io >/dev/null 2>&1 ||
    die "The cluster of context '$KUBE_CONTEXT' has no RayJob CRD: the KubeRay operator is not installed. Run ./scripts/install-ray.sh (it installs the operator and loads the image on every node), then this again."
  if kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" get raycluster "$RAY_CLUSTER_NAME" >/dev/null 2>&1; then
    die "The RayCluster '$RAY_CLUSTER_NAME' of ./scripts/install-ray.sh is running, and the RayJob starts a cluster of its own: the two do not fit the nodes' memory. Delete it first: kubectl --context $KUBE_CONTEXT -n $RAY_NAMESPACE delete raycluster $RAY_CLUSTER_NAME   (./scripts/install-ray.sh brings it back)."
  fi
}

# Read the RayJob's status into JOB_DEPLOYMENT, JOB_STATUS, JOB_CLUSTER, JOB_REASON, JOB_MESSAGE.
read_job_status() {
  local status
  status="$(kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" get rayjob "$JOB_NAME" \
    --output 'jsonpath={.status.jobDeploymentStatus}|{.status.jobStatus}|{.status.rayClusterName}|{.status.reason}|{.status.message}' \
    2>/dev/null || true)"
  IFS='|' read -r JOB_DEPLOYMENT JOB_STATUS JOB_CLUSTER JOB_REASON JOB_MESSAGE <<<"$status" || true
}

# Wait until the job runs (or has already ended); on a time-out explain the cluster's pods.
wait_for_start() {
  local deadline=$((SECONDS + START_TIMEOUT)) shown=""
  while true; do
    read_job_status
    if [[ "$JOB_DEPLOYMENT" != "$shown" && -n "$JOB_DEPLOYMENT" ]]; then
      log "RayJob $JOB_NAME: ${JOB_DEPLOYMENT}${JOB_CLUSTER:+ (RayCluster $JOB_CLUSTER)}"
      shown="$JOB_DEPLOYMENT"
    fi
    case "$JOB_DEPLOYMENT" in
      Running | Complete | Failed) return 0 ;;
      ValidationFailed)
        die "KubeRay refused the RayJob: ${JOB_MESSAGE:-no reason given} (the submitted manifest is $RUN_DIR/rayjob.yaml; was k8s/ray-job.yaml or k8s/ray-cluster.yaml edited?)"
        ;;
    esac
    ((SECONDS < deadline)) || break
    sleep "$POLL_INTERVAL"
  done
  [[ -z "$JOB_CLUSTER" ]] || explain_pods "$KUBE_CONTEXT" "$RAY_NAMESPACE" "ray.io/cluster=$JOB_CLUSTER"
  die "The RayJob did not start within ${START_TIMEOUT}s (status '${JOB_DEPLOYMENT:-none}'${JOB_MESSAGE:+: $JOB_MESSAGE}). What its pods wait for is above; 'kubectl --context $KUBE_CONTEXT -n $OPERATOR_NAMESPACE logs deployment/kuberay-operator' shows the operator's side. The RayJob is deleted on exit."
}

# Follow the job's logs (the submitter's `ray job logs --follow`), then wait until it ends.
follow_job() {
  log "The job's output (kubectl logs --follow job/$JOB_NAME):"
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" logs --follow "job/$JOB_NAME" \
    --pod-running-timeout=5m || warn "The log stream ended early; waiting for the job to end all the same."
  while true; do
    read_job_status
    case "$JOB_DEPLOYMENT" in
      Complete | Failed) break ;;
    esac
    sleep "$POLL_INTERVAL"
  done
  log "RayJob $JOB_NAME: $JOB_DEPLOYMENT, job status ${JOB_STATUS:-unknown}"
}

# Copy the run folder from the head pod, which stays ttlSecondsAfterFinished after the end.
copy_rayjob_results() {
  local head
  local -a files=()
  read -r -a files <<<"$(job_result_files)"
  head="$(RAY_CLUSTER_NAME="$JOB_CLUSTER" ray_head_pod --context "$KUBE_CONTEXT")"
  [[ -n "$head" ]] ||
    die "The head pod of the RayJob's cluster '$JOB_CLUSTER' is gone, and the results with it (k8s/ray-job.yaml keeps it ttlSecondsAfterFinished after the end). The job's log: kubectl --context $KUBE_CONTEXT -n $RAY_NAMESPACE logs job/$JOB_NAME"
  copy_results_from_head "$KUBE_CONTEXT" "$head" "$POD_RUN_DIR" "$RUN_DIR" "${files[@]}"
}

# For EXIT traps: delete a RayJob that an interrupt or a failure left running (its cluster
# goes with it, which stops the training).
stop_rayjob() {
  if ((JOB_ACTIVE == 1)); then
    JOB_ACTIVE=0
    log "Deleting RayJob $JOB_NAME: its RayCluster goes with it, which stops the training."
    kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" delete rayjob "$JOB_NAME" \
      --wait=false >/dev/null 2>&1 || warn "Could not delete RayJob $JOB_NAME: kubectl delete rayjob $JOB_NAME"
  fi
}

# The whole RayJob run (run-rayjob.sh), or with DRY_RUN=1 only the manifest on stdout. The
# caller's EXIT trap runs stop_rayjob (target_stop) and close_run_dir.
run_rayjob() {
  resolve_rayjob_workers
  if ((DRY_RUN == 1)); then
    render_ray_job
    return 0
  fi
  log "Settings: NUM_WORKERS=$NUM_WORKERS CPUS_PER_WORKER=$CPUS_PER_WORKER EPOCHS=$EPOCHS BATCH_SIZE=$BATCH_SIZE (per worker) DATASET=$DATASET TRAIN_SIZE=$TRAIN_SIZE TEST_SIZE=$TEST_SIZE RESULTS_DIR=$RESULTS_DIR"
  require_recipe_fits_pods
  check_rayjob_cluster
  local suffix="minikube-rayjob"
  [[ "${JOB:-benchmark}" == benchmark ]] || suffix="$suffix-$JOB"
  [[ "$MODE" == default ]] || suffix="$suffix-$MODE"
  new_run_dir "$RESULTS_DIR" "$suffix"
  log "This run's folder: $RUN_DIR"
  render_ray_job >"$RUN_DIR/rayjob.yaml"
  log "Submitting RayJob $JOB_NAME (the manifest is kept as $RUN_DIR/rayjob.yaml)."
  kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" create --filename "$RUN_DIR/rayjob.yaml" ||
    die "kubectl could not create the RayJob (output above)."
  JOB_ACTIVE=1
  log "Waiting up to ${START_TIMEOUT}s for its RayCluster and the job to start (a first start takes a few minutes)."
  wait_for_start
  follow_job
  JOB_ACTIVE=0
  if [[ "$JOB_STATUS" != SUCCEEDED ]]; then
    die "The RayJob ended as $JOB_DEPLOYMENT with job status '${JOB_STATUS:-none}'${JOB_REASON:+ ($JOB_REASON)}${JOB_MESSAGE:+: $JOB_MESSAGE}. Its log: kubectl --context $KUBE_CONTEXT -n $RAY_NAMESPACE logs job/$JOB_NAME. Its cluster is deleted ttlSecondsAfterFinished (300 s) after the end; the RayJob stays until 'kubectl delete rayjob $JOB_NAME' or ./scripts/cleanup.sh."
  fi
  copy_rayjob_results
  if [[ "$KEEP_RAYJOB" == 1 ]]; then
    log "KEEP_RAYJOB=1: RayJob $JOB_NAME stays; its cluster goes ttlSecondsAfterFinished after the end."
  else
    log "Deleting RayJob $JOB_NAME and what is left of its cluster."
    kubectl --context "$KUBE_CONTEXT" --namespace "$RAY_NAMESPACE" delete rayjob "$JOB_NAME" --wait=false ||
      warn "Could not delete RayJob $JOB_NAME; its cluster is deleted ttlSecondsAfterFinished after the end anyway."
  fi
}
