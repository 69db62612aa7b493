#!/usr/bin/env bash
# The rehearsal target, for tests and maintainers on Linux with root (not the learner's
# path): the pods of k8s/ray-cluster.yaml started on this machine by
# scripts/experiments/rehearse-pods.sh, each with its own network namespace and address, its
# memory limit in a cgroup and its CPU limit as a CFS quota, and KubeRay 1.7.0's `ray start`
# command. The benchmark runs in the head pod as `kubectl exec` would run it on Minikube; each
# phase's cgroup figures (memory peak against the limit, OOM kills, CPU throttling) go into
# rehearsal.json and REHEARSAL.md in the run folder, and an OOM kill is named in words. The
# chaos demo cuts a worker pod's network (its veth down) instead of killing it.
# Sourced by scripts/lib/targets.sh; it implements the functions listed there and has no main.
#
# Reads REHEARSAL_NAME, REHEARSAL_DIR, HEAD_MEMORY, WORKER_MEMORY, HEAD_CPU, WORKER_CPU
# (rehearse-pods.sh's settings), the command's settings, and the chaos demo's SPARE_NODES.

# shellcheck disable=SC2034 # set here, read by the scripts that source this file
# shellcheck disable=SC2153 # NUM_WORKERS and the recipe's settings come from scripts/lib/recipe.sh

# shellcheck source=scripts/lib/venv.sh
source "$SCRIPTS_DIR/lib/venv.sh"
# shellcheck source=scripts/lib/pod.sh
source "$SCRIPTS_DIR/lib/pod.sh"
# shellcheck source=scripts/lib/rehearsal.sh
source "$SCRIPTS_DIR/lib/rehearsal.sh"

VENV_PYTHON="$REPO_ROOT/.venv/bin/python"
REHEARSAL="$SCRIPTS_DIR/experiments/rehearse-pods.sh"
export REHEARSAL_NAME="${REHEARSAL_NAME:-ray-demo-rehearsal}"
export REHEARSAL_DIR="${REHEARSAL_DIR:-/var/tmp/ray-demo-rehearsal}"
PODS_STARTED=0

# Available as root on Linux with namespaces and cgroup v1 (never chosen by TARGET=auto:
# local comes first and is always available).
target_available() {
  TARGET_REASON="the rehearsal needs root, ip netns and cgroup v1's memory and cpu controllers"
  ((EUID == 0)) && command -v ip >/dev/null 2>&1 && [[ -w /sys/fs/cgroup/memory && -w /sys/fs/cgroup/cpu ]] || return 1
  TARGET_REASON="the pods of k8s/ray-cluster.yaml can be rehearsed on this machine"
}

target_settings() {
  log "Rehearsal: the pods of k8s/ray-cluster.yaml as namespaces and cgroups ($REHEARSAL_NAME, files in $REHEARSAL_DIR)${HEAD_MEMORY:+ HEAD_MEMORY=$HEAD_MEMORY}${WORKER_MEMORY:+ WORKER_MEMORY=$WORKER_MEMORY}${HEAD_CPU:+ HEAD_CPU=$HEAD_CPU}${WORKER_CPU:+ WORKER_CPU=$WORKER_CPU}"
}

# Refuse a folder that every pod must share but that lies under /tmp: each pod has its own.
# Usage: require_shared_dir NAME PATH
require_shared_dir() {
  local path
  path="$(cd "$2" 2>/dev/null && pwd || echo "$2")"
  # The repository itself is mounted back into every pod (scripts/lib/rehearsal.sh).
  [[ "$path" != /tmp && "$path" != /tmp/* ]] || [[ "$path/" == "$REPO_ROOT/"* ]] ||
    die "$1 '$2' is under /tmp, and each rehearsed pod has a /tmp of its own: the pods would not share it. Choose a folder outside /tmp."
}

# The checks of the Minikube target (the recipe against the pods' memory), plus root and .venv.
target_benchmark_check() {
  target_available || die "TARGET=rehearsal: $TARGET_REASON."
  require_recipe_fits_pods
  require_shared_dir DATA_DIR "$DATA_DIR"
  [[ "${CHECKPOINT:-0}" != 1 ]] || require_shared_dir CHECKPOINT_DIR "$CHECKPOINT_DIR"
  ensure_venv requirements.txt
}

# Start WORKERS worker pods beside the head.
start_pods() {
  PODS_STARTED=1
  REHEARSAL_WORKERS="$1" run_step "$REHEARSAL" start || die "The rehearsal's pods did not start (see above)."
}

# Run CMD... in pod POD, as `kubectl exec` would.
in_pod() {
  run_step "$REHEARSAL" exec "$@"
}

# Record every pod's cgroup figures for PHASE (the peaks restart from here).
snapshot() {
  "$VENV_PYTHON" -m tools.pod_rehearsal snapshot --dir "$REHEARSAL_DIR" --phase "$1" ||
    warn "Could not read the pods' cgroups for the $1 phase."
}

# The cgroup figures against the limits, into the run folder; an OOM kill named in words.
rehearsal_report() {
  local status=0
  "$VENV_PYTHON" -m tools.pod_rehearsal report --dir "$REHEARSAL_DIR" --out "$RESULTS_DIR/rehearsal.json" \
    >"$RESULTS_DIR/REHEARSAL.md" || status=$?
  cat "$RESULTS_DIR/REHEARSAL.md"
  cp "$REHEARSAL_DIR/plan.json" "$RESULTS_DIR/pods.json" 2>/dev/null || true
  return "$status"
}

# A step in the head pod failed: say whether a pod was OOM-killed or cut off, then stop with MESSAGE.
pod_step_failed() {
  local cut
  snapshot "$1"
  if ! rehearsal_report >/dev/null; then
    die "$2 $(sed -n 's/^\(Pod .* was OOM-killed.*\)$/\1/p' "$RESULTS_DIR/REHEARSAL.md" | tr '\n' ' ')"
  fi
  cut="$(cut_pods | tr '\n' ' ')"
  if [[ -n "$cut" ]]; then
    die "$2 The network of pod(s) ${cut% } was cut: their Ray nodes and training workers stopped answering (TensorFlow's collective and Ray's health checks time out). The run resumes on other pods only with checkpoints and restarts left: CHECKPOINT=1 and MAX_FAILURES of 1 or more, and a spare worker pod."
  fi
  die "$2 No pod was OOM-killed or cut off; see the output above and $REHEARSAL_DIR/pods/*/container.log."
}

# The benchmark in the head pod, as on Minikube: baseline, Ray run, comparison and report are
# written into a folder of the pod's own /tmp, then copied into the run folder.
target_benchmark() {
  local pod_dir
  pod_dir="/tmp/results/run-$(date +%Y%m%d-%H%M%S)-$$"
  start_pods "$NUM_WORKERS"
  snapshot start
  if [[ -n "${BASELINE_RESULTS:-}" ]]; then
    log "1/4 Baseline: reusing $BASELINE_RESULTS (BASELINE_RESULTS)"
    if ! { mkdir -p "$REHEARSAL_DIR/pods/head$pod_dir" && cp "$BASELINE_RESULTS" "$REHEARSAL_DIR/pods/head$pod_dir/baseline_results.json"; }; then
      die "Could not copy BASELINE_RESULTS '$BASELINE_RESULTS' into the head pod."
    fi
  else
    log "1/4 Baseline in the head pod: one process, $CPUS_PER_WORKER CPU(s), the global batch of $NUM_WORKERS worker(s)."
    training_args baseline "$pod_dir" --data-dir "$DATA_DIR"
    in_pod head python "${TRAINING_ARGS[@]}" || pod_step_failed baseline "The baseline failed in the head pod."
  fi
  snapshot baseline
  log "2/4 Ray training from the head pod: $NUM_WORKERS worker pod(s) x $CPUS_PER_WORKER CPU(s), batch $BATCH_SIZE per worker."
  checkpoint_flags
  training_args ray "$pod_dir" --data-dir "$DATA_DIR" --address auto --storage-path "$CHECKPOINT_DIR" \
    ${CHECKPOINT_FLAGS[@]+"${CHECKPOINT_FLAGS[@]}"}
  in_pod head python "${TRAINING_ARGS[@]}" || pod_step_failed ray "The Ray training failed."
  snapshot ray
  log "3/4 Comparison"
  in_pod head python -m analysis.compare --results-dir "$pod_dir" --num-workers "$NUM_WORKERS" ||
    die "The comparison failed (see above)."
  log "4/4 Report"
  in_pod head python -m analysis.report --run-dir "$pod_dir" --data-dir "$DATA_DIR" ||
    die "The report could not be written (see above); the JSON results are in the head pod's $pod_dir."
  copy_out_of_head "$pod_dir"
}

# Copy the head pod's run folder POD_DIR into RESULTS_DIR; then the pods' cgroups, each phase.
copy_out_of_head() {
  cp -R "$REHEARSAL_DIR/pods/head$1/." "$RESULTS_DIR/" || die "Could not copy the head pod's $1 into $RESULTS_DIR."
  log "The pods' cgroups, each phase (also in $RESULTS_DIR/REHEARSAL.md and rehearsal.json):"
  rehearsal_report || die "A pod was OOM-killed although the run finished (see above)."
}

# run-tune.sh: the benchmark's checks.
target_tune_check() {
  target_benchmark_check
}

# run-tune.sh: the search and TUNE.md in the head pod, as `kubectl exec` would run them.
target_tune() {
  local pod_dir
  pod_dir="/tmp/results/tune-run-$(date +%Y%m%d-%H%M%S)-$$"
  start_pods "$NUM_WORKERS"
  snapshot start
  tune_args "$pod_dir" --data-dir "$DATA_DIR" --address auto
  in_pod head python "${TRAINING_ARGS[@]}" || pod_step_failed tune "The search failed."
  snapshot tune
  in_pod head python -m analysis.tune_report --run-dir "$pod_dir" || die "TUNE.md could not be written (see above)."
  copy_out_of_head "$pod_dir"
}

# Chaos: checkpoints in CHECKPOINT_DIR, which every pod reaches (one machine's disk).
target_chaos_check() {
  target_available || die "TARGET=rehearsal: $TARGET_REASON."
  require_recipe_fits_pods
  require_writable_dir CHECKPOINT_DIR "$CHECKPOINT_DIR"
  CHECKPOINT_DIR="$(cd "$CHECKPOINT_DIR" && pwd)"
  require_shared_dir CHECKPOINT_DIR "$CHECKPOINT_DIR"
  require_shared_dir RESULTS_DIR "$RESULTS_DIR"
  RUN_LOCATION="$CHECKPOINT_DIR/$RUN_NAME"
}

# Chaos: the pods, with SPARE_NODES spare worker pods for the restarted worker group.
target_chaos_start() {
  ensure_venv requirements.txt
  start_pods "$((NUM_WORKERS + SPARE_NODES))"
}

# Chaos: the Ray run in the head pod, in the background, with FLAGs; TRAIN_PID is its exec.
target_chaos_train() {
  training_args ray "$RESULTS_DIR" --data-dir "$DATA_DIR" --address auto --storage-path "$CHECKPOINT_DIR" "$@"
  "$REHEARSAL" exec head python "${TRAINING_ARGS[@]}" &
  TRAIN_PID=$!
}

target_python() {
  "$VENV_PYTHON" "$@"
}

# Chaos: the victim is the worker pod whose Ray node runs the rank; its network is cut.
target_chaos_victim() {
  CHAOS_VICTIM="$(node_pod "$1")"
  CHAOS_HOW="the network of pod $CHAOS_VICTIM cut (its veth down on the bridge): the pod and its processes live on, unreachable"
}

target_chaos_kill() {
  log "CHAOS: epoch $KILL_AFTER_EPOCH is checkpointed; cutting the network of pod $CHAOS_VICTIM (worker rank $KILL_RANK)"
  "$REHEARSAL" cut-network "$CHAOS_VICTIM"
  log "CHAOS: network cut. Watch Ray notice the unreachable node, restart the worker group on the spare pod and resume from epoch $KILL_AFTER_EPOCH."
}

target_chaos_finish() {
  "$VENV_PYTHON" -m tools.chaos report "$RESULTS_DIR/$1"
}

target_open_dashboard() {
  die "The rehearsal's dashboard listens inside the head pod's network namespace only. Reach it from there: $REHEARSAL exec head curl -s http://127.0.0.1:8265/api/version"
}

# The RayJob, rehearsed: the pods of its cluster, then its submitter pod running KubeRay's
# `ray job submit` of the entrypoint run-rayjob.sh renders (scripts/lib/rayjob.sh's
# job_entrypoint) against the head's dashboard; the run folder is copied out of the head pod.
# There is no operator: the pods are started and stopped here, not from the RayJob's spec.
target_run_rayjob() {
  # shellcheck source=scripts/lib/rayjob.sh
  source "$SCRIPTS_DIR/lib/rayjob.sh"
  target_available || die "TARGET=rehearsal: $TARGET_REASON."
  require_recipe_fits_pods
  local entrypoint
  entrypoint="$(job_entrypoint)"
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    log "Would start the pods, then submit job $JOB_NAME from the submitter pod with the entrypoint:"
    echo "$entrypoint"
    return 0
  fi
  local suffix="rehearsal-rayjob"
  [[ "${JOB:-benchmark}" == benchmark ]] || suffix="$suffix-$JOB"
  [[ "$MODE" == default ]] || suffix="$suffix-$MODE"
  new_run_dir "$RESULTS_DIR" "$suffix"
  RESULTS_DIR="$RUN_DIR"
  log "This run's folder: $RUN_DIR"
  ensure_venv requirements.txt
  start_pods "$NUM_WORKERS"
  snapshot start
  printf '%s\n' "$entrypoint" >"$RUN_DIR/entrypoint.txt"
  run_step "$REHEARSAL" submit "$JOB_NAME" "$RUN_DIR/entrypoint.txt" || pod_step_failed rayjob "The RayJob $JOB_NAME failed."
  snapshot rayjob
  cp -R "$REHEARSAL_DIR/pods/head$POD_RUN_DIR/." "$RUN_DIR/" ||
    die "Could not copy the head pod's $POD_RUN_DIR into $RUN_DIR."
  log "The pods' cgroups (also in $RUN_DIR/REHEARSAL.md and rehearsal.json):"
  rehearsal_report || die "A pod was OOM-killed although the job finished (see above)."
  log "RayJob $JOB_NAME succeeded; its run folder: $RUN_DIR"
}

# For EXIT traps: stop the pods this target started (never fails).
target_stop() {
  if ((PODS_STARTED == 1)); then
    PODS_STARTED=0
    "$REHEARSAL" stop || true
  fi
}
