#!/usr/bin/env bash
# The local target: a real multi-node Ray cluster on this machine (scripts/local-cluster.sh:
# a head node and a worker node per Ray Train worker, each its own `ray start`), or the one
# at RAY_ADDRESS, with .venv's Python. The benchmark can be monitored (MONITORING=1,
# scripts/lib/monitoring.sh). Sourced by scripts/lib/targets.sh; it implements the functions
# listed there and has no main.
#
# Reads the command's settings: RAY_ADDRESS (a cluster of the user's, never started or
# stopped here), RAY_PORT, DASHBOARD_PORT, PIN_CPUS, CLUSTER_DIR, DATA_DIR, RESULTS_DIR,
# CHECKPOINT_DIR, BASELINE_RESULTS and the chaos demo's SPARE_NODES.

# shellcheck disable=SC2034 # set here, read by the scripts that source this file

# shellcheck source=scripts/lib/venv.sh
source "$SCRIPTS_DIR/lib/venv.sh"
# shellcheck source=scripts/lib/cluster.sh
source "$SCRIPTS_DIR/lib/cluster.sh"
# shellcheck source=scripts/lib/monitoring.sh
source "$SCRIPTS_DIR/lib/monitoring.sh"

# The .venv interpreter; PYTHON (read by ensure_venv) chooses the one that creates .venv.
VENV_PYTHON="$REPO_ROOT/.venv/bin/python"
# The cluster the user pointed us at, if any: it is used, never started or stopped here.
USER_RAY_ADDRESS="${RAY_ADDRESS:-}"
CLUSTER_STARTED=0

# Always available: this machine can start a cluster of its own.
target_available() {
  TARGET_REASON="local starts a multi-node Ray cluster on this machine"
}

# The cluster this target uses.
target_settings() {
  log "Local cluster: ${USER_RAY_ADDRESS:-new one on 127.0.0.1:${RAY_PORT:-6380}, dashboard port ${DASHBOARD_PORT:-8265}} PIN_CPUS=${PIN_CPUS:-auto}"
}

# Before the run folder: check the monitoring's settings, refuse more CPUs than cores, fail at
# once on a RAY_ADDRESS where nothing answers, and make .venv.
target_benchmark_check() {
  check_monitoring_settings
  if [[ -z "$USER_RAY_ADDRESS" ]]; then
    require_cores "$NUM_WORKERS" "$CPUS_PER_WORKER"
    require_free_port RAY_PORT "${RAY_PORT:-6380}" "another Ray cluster?"
    require_free_port DASHBOARD_PORT "${DASHBOARD_PORT:-8265}" "another Ray dashboard?"
  fi
  require_memory "${MODE:-default}"
  check_existing_cluster "$USER_RAY_ADDRESS"
  ensure_venv requirements.txt
}

# Start the local multi-node cluster, or use the one at RAY_ADDRESS.
start_local_cluster() {
  if [[ -n "$USER_RAY_ADDRESS" ]]; then
    log "Using the running Ray cluster at $USER_RAY_ADDRESS (it will be left running)."
    export RAY_ADDRESS="$USER_RAY_ADDRESS"
    return 0
  fi
  start_cluster_nodes "$NUM_WORKERS"
}

# Plain Keras in one process with the budget of one Ray worker and the Ray run's global batch.
run_baseline() {
  if [[ -n "${BASELINE_RESULTS:-}" ]]; then
    log "1/3 Baseline: reusing $BASELINE_RESULTS (BASELINE_RESULTS)"
    cp "$BASELINE_RESULTS" "$RESULTS_DIR/baseline_results.json" ||
      die "Could not copy BASELINE_RESULTS '$BASELINE_RESULTS' into $RESULTS_DIR."
    return 0
  fi
  baseline_pin
  log "1/3 Baseline: plain Keras, $CPUS_PER_WORKER CPU(s), the global batch of $NUM_WORKERS worker(s)"
  training_args baseline "$RESULTS_DIR" --data-dir "$DATA_DIR"
  run_step ${PIN[@]+"${PIN[@]}"} "$VENV_PYTHON" "${TRAINING_ARGS[@]}" || die "The baseline training failed (see above)."
}

# The baseline's core(s), in PIN (a taskset prefix, or nothing): the first CPUS_PER_WORKER,
# which worker node 1 is pinned to as well.
baseline_pin() {
  PIN=()
  if [[ "$PIN_CPUS" == 1 || ("$PIN_CPUS" == auto && -z "$USER_RAY_ADDRESS") ]] && command -v taskset >/dev/null 2>&1; then
    PIN=(taskset -c "0-$((CPUS_PER_WORKER - 1))")
  fi
}

# The default recipe without a TRAIN_SIZE of the user's: a few seconds of the baseline's step,
# on its core, choose the training-set size for about 2.5 minutes of baseline training on this
# machine (harness/calibrate.py; calibration.json in the run folder), and the recipe is
# resolved again with it. Explicit sizes, --smoke-test, --full and BASELINE_RESULTS skip it.
calibrate_train_size() {
  [[ "${MODE:-default}" == default && -z "${GIVEN_TRAIN_SIZE:-}" && -z "${BASELINE_RESULTS:-}" ]] || return 0
  log "Calibration: sizing the training set to this machine (TRAIN_SIZE=<n> sets it yourself)"
  baseline_pin
  run_step ${PIN[@]+"${PIN[@]}"} "$VENV_PYTHON" -m harness.calibrate "${RECIPE_FLAGS[@]}" --results-dir "$RESULTS_DIR" ||
    die "The calibration failed (see above). Set TRAIN_SIZE (for example TRAIN_SIZE=4096) to skip it."
  TRAIN_SIZE="$(sed -n 's/^ *"train_size": \([0-9][0-9]*\).*/\1/p' "$RESULTS_DIR/calibration.json")"
  [[ -n "$TRAIN_SIZE" ]] || die "The calibration wrote no train_size into $RESULTS_DIR/calibration.json."
  resolve_recipe "$MODE"
  # The larger training set must still fit this machine's memory, in every process.
  TRAIN_SIZE="$TRAIN_SIZE" require_memory "$MODE"
}

# Ray Train with NUM_WORKERS workers on the cluster; checkpoints are opt-in (CHECKPOINT=1,
# RESUME=1; see harness/run_state.py) and go to CHECKPOINT_DIR. Without them the run keeps
# nothing (its state goes to a temporary folder), so CHECKPOINT_DIR is not even created.
run_ray() {
  log "2/3 Ray Train: $NUM_WORKERS workers x $CPUS_PER_WORKER CPU(s), batch $BATCH_SIZE per worker"
  checkpoint_flags
  ((${#CHECKPOINT_FLAGS[@]} == 0)) || CHECKPOINT_FLAGS+=(--storage-path "$CHECKPOINT_DIR")
  training_args ray "$RESULTS_DIR" --data-dir "$DATA_DIR" --address "$RAY_ADDRESS" \
    ${CHECKPOINT_FLAGS[@]+"${CHECKPOINT_FLAGS[@]}"}
  run_step "$VENV_PYTHON" "${TRAINING_ARGS[@]}" || die "The Ray training failed (see above)."
}

# The control (TENSORFLOW_ALONE=1, the default): the Ray run's training as N plain processes
# with TF_CONFIG written by hand and no Ray (harness/tensorflow_alone.py), each pinned like
# the worker node of its rank; it runs beside the same idle cluster as the baseline.
run_tensorflow_alone() {
  if [[ "${TENSORFLOW_ALONE:-1}" != 1 ]]; then
    log "Control: TensorFlow alone skipped (TENSORFLOW_ALONE=0)"
    return 0
  fi
  log "Control: TensorFlow alone, $NUM_WORKERS processes x $CPUS_PER_WORKER CPU(s), TF_CONFIG by hand, no Ray"
  training_args tensorflow_alone "$RESULTS_DIR" --data-dir "$DATA_DIR" --pin-cpus "$PIN_CPUS"
  run_step "$VENV_PYTHON" "${TRAINING_ARGS[@]}" || die "The TensorFlow-alone control failed (see above); TENSORFLOW_ALONE=0 skips it."
}

# The whole local benchmark into RESULTS_DIR (the run folder).
target_benchmark() {
  prepare_monitoring "$RESULTS_DIR" "${MODE:-default}"
  calibrate_train_size
  start_local_cluster
  start_monitoring
  run_baseline
  run_ray
  run_tensorflow_alone
  log "3/3 Comparison"
  run_step "$VENV_PYTHON" -m analysis.compare --results-dir "$RESULTS_DIR" --num-workers "$NUM_WORKERS" ||
    die "The comparison failed (see above)."
  log "Results: $RESULTS_DIR/baseline_results.json, $RESULTS_DIR/ray_results_${NUM_WORKERS}workers.json, $RESULTS_DIR/comparison.json"
  log "Report"
  run_step "$VENV_PYTHON" -m analysis.report --run-dir "$RESULTS_DIR" --data-dir "$DATA_DIR" ||
    die "The report could not be written (see above); the JSON results are in $RESULTS_DIR."
}

# run-tune.sh: the benchmark's checks (cores, ports, memory, .venv).
target_tune_check() {
  target_benchmark_check
}

# run-tune.sh: the search on the local cluster (or RAY_ADDRESS's), then TUNE.md.
target_tune() {
  start_local_cluster
  tune_args "$RESULTS_DIR" --data-dir "$DATA_DIR" --address "$RAY_ADDRESS"
  run_step "$VENV_PYTHON" "${TRAINING_ARGS[@]}" ||
    die "The search failed (see above); $RESULTS_DIR/tune_results.json says how far it got."
  run_step "$VENV_PYTHON" -m analysis.tune_report --run-dir "$RESULTS_DIR" || die "TUNE.md could not be written (see above)."
}

# Chaos: the run's checkpoints and status go to CHECKPOINT_DIR, which every node reaches.
target_chaos_check() {
  # The training's workers need a core each; the spare node only waits for the kill.
  require_cores "$NUM_WORKERS" "$CPUS_PER_WORKER"
  require_memory default
  if ((10#$SPARE_NODES == 0)); then
    warn "SPARE_NODES=0: after the kill the cluster has no room for a new worker group; Ray Train waits for a node that never comes."
  fi
  require_writable_dir CHECKPOINT_DIR "$CHECKPOINT_DIR"
  CHECKPOINT_DIR="$(cd "$CHECKPOINT_DIR" && pwd)"
  RUN_LOCATION="$CHECKPOINT_DIR/$RUN_NAME"
}

# Chaos: a cluster with SPARE_NODES spare worker nodes: a killed node does not come back, and
# the restarted worker group needs one.
target_chaos_start() {
  ensure_venv requirements.txt
  start_cluster_nodes "$((NUM_WORKERS + SPARE_NODES))"
}

# Chaos: the Ray run, in the background, with FLAGs; TRAIN_PID is the process itself.
target_chaos_train() {
  training_args ray "$RESULTS_DIR" --data-dir "$DATA_DIR" --address "${RAY_ADDRESS:-auto}" \
    --storage-path "$CHECKPOINT_DIR" "$@"
  "$VENV_PYTHON" "${TRAINING_ARGS[@]}" &
  TRAIN_PID=$!
}

# `python ARGS` with .venv's interpreter.
target_python() {
  "$VENV_PYTHON" "$@"
}

# Chaos: the victim is the node itself, killed as a crash would.
target_chaos_victim() {
  CHAOS_VICTIM="$1"
  CHAOS_HOW="SIGKILL to the node's raylet and all its processes (scripts/local-cluster.sh kill-node)"
}

# Chaos: kill the victim's node: SIGKILL to its raylet and every process of its temp dir.
target_chaos_kill() {
  local node="$1"
  log "CHAOS: epoch $KILL_AFTER_EPOCH is checkpointed; killing the node of worker rank $KILL_RANK (${node:0:8})"
  RAY_PORT="$RAY_PORT" CLUSTER_DIR="$CLUSTER_DIR" "$SCRIPTS_DIR/local-cluster.sh" kill-node "$node"
  log "CHAOS: node killed. Watch Ray Train notice it, restart the worker group and resume from epoch $KILL_AFTER_EPOCH."
}

# Chaos: the recovery report of the results file.
target_chaos_finish() {
  "$VENV_PYTHON" -m tools.chaos report "$RESULTS_DIR/$1"
}

# The dashboard of the running local cluster, and its token step.
target_open_dashboard() {
  if ! address_answers "127.0.0.1:$DASHBOARD_PORT"; then
    die "No Ray dashboard answers on 127.0.0.1:$DASHBOARD_PORT. The local cluster runs only while ./scripts/run-benchmark.sh (dashboard port 8265) or ./scripts/experiments/chaos.sh (DASHBOARD_PORT=8266) runs: start one in another terminal and run this again, with that DASHBOARD_PORT."
  fi
  log "Ray dashboard: http://127.0.0.1:$DASHBOARD_PORT"
  if [[ -f "$CLUSTER_DIR/auth_token" ]]; then
    log "This cluster uses token authentication. When the dashboard asks for a token, paste the contents of $CLUSTER_DIR/auth_token (print it with: cat $CLUSTER_DIR/auth_token). Each start of the cluster makes a new token."
  else
    warn "No $CLUSTER_DIR/auth_token: if the dashboard asks for a token, set RAY_PORT or CLUSTER_DIR to the cluster's (chaos.sh: RAY_PORT=6381)."
  fi
}

# A RayJob is a KubeRay resource: there is none on a local cluster.
target_run_rayjob() {
  die "The local target cannot run a RayJob: a RayJob is a KubeRay resource, and the local cluster has no Kubernetes. Run the same benchmark locally with ./scripts/run-benchmark.sh, or run this with TARGET=minikube after ./scripts/install-ray.sh."
}

# For EXIT traps: stop the monitoring and the cluster this target started (never fails).
target_stop() {
  stop_monitoring
  stop_started_cluster
}
