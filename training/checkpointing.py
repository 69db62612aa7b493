"""Fault tolerance for the Ray run: per-epoch checkpoints, recovery, restart counting.

Every epoch, rank 0 writes the model weights, the optimizer state and the epoch number to
a temporary folder and every worker calls `ray.train.report(..., checkpoint=...)` (rank 0
with the checkpoint, the others with None: one copy is enough, the weights are identical).
Ray Train copies the folder into `storage_path/run_name/`, which every node must reach.
When a worker dies, Ray Train restarts the whole worker group (up to
`FailureConfig(max_failures)` times) and `ray.train.get_checkpoint()` hands the new
group the latest checkpoint; `begin_attempt` loads it and returns the epoch to resume at.
Starting the trainer again with the same `RunConfig(storage_path, name)` resumes an
interrupted run the same way (Ray Train V2 has no `Trainer.restore`).

Each worker group attempt registers with the driver's collector actor, so the driver
counts restarts itself and knows the epoch each attempt resumed from; a thread in the
driver writes `progress.json` into the run's folder and logs each restart as it happens.
`scripts/chaos.sh` reads that file to kill a worker node right after a chosen epoch.
"""

import json
import os
import tempfile
import threading
import time

from training import runtime, storage

DEFAULT_MAX_FAILURES = 2
# Two checkpoints on disk: the latest, and the one before it in case the latest is torn.
CHECKPOINTS_TO_KEEP = 2
WEIGHTS_FILE = "model_weights.npz"
OPTIMIZER_FILE = "optimizer_weights.npz"
STATE_FILE = "train_state.json"
# Files the driver keeps in the run's folder, beside Ray Train's own.
STATUS_FILE = "run_status.json"
PROGRESS_FILE = "progress.json"
FAILURE_FILE = "injected_failure.json"
# Ray Train V2 writes this after it registers a checkpoint; a checkpoint folder alone may
# still be half copied, so the epoch a restart would resume from is read from here.
RAY_SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"
# Settings a resumed run must share with the run it continues (epochs may grow).
RESUME_KEYS = ("dataset", "train_size", "test_size", "batch_size", "num_workers", "seed",
               "learning_rate")


# --------------------------------------------------------------------------------------
# Worker side: runs inside train_loop_per_worker.
# --------------------------------------------------------------------------------------

def begin_attempt(tf, strategy, model, config, rank, timer, step_counter):
    """Register this worker group attempt and load the latest checkpoint, if any.

    Returns the epoch to start at (0 without a checkpoint), for `fit(initial_epoch=...)`.
    The epochs already done are put back into the timer and the step counter, so the
    record of a restarted run still holds every epoch's time, history and steps.
    """
    import numpy as np
    import ray.train

    state = {"epoch": 0}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            with open(os.path.join(folder, STATE_FILE), encoding="utf-8") as source:
                state = json.load(source)
            with np.load(os.path.join(folder, WEIGHTS_FILE)) as arrays:
                weights = [arrays[f"arr_{index}"] for index in range(len(arrays.files))]
            with np.load(os.path.join(folder, OPTIMIZER_FILE)) as arrays:
                optimizer_weights = [arrays[f"arr_{index}"] for index in range(len(arrays.files))]
        # Adam's slots do not exist before the first step: create them (mirrored, inside
        # the scope) so that its moments and step count can be restored, not just weights.
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
        model.set_weights(weights)
        model.optimizer.set_weights(optimizer_weights)
        timer.epoch_times[:0] = state["epoch_times_seconds"]
        timer.epoch_cpu_seconds[:0] = state.get("epoch_cpu_seconds", [])
        timer.epoch_page_faults[:0] = state.get("epoch_page_faults", [])
        timer.history[:0] = state["history"]
        step_counter.steps_per_epoch[:0] = state["steps_per_epoch"]
        # A new process replays the seeds of epoch 1: the same shuffle order and dropout
        # masks as the batches the restored weights just learned, on which the loss then
        # collapses to ~0. Seed the resumed epochs differently (data and weights are
        # built lazily by fit, after this).
        tf.keras.utils.set_random_seed(config["seed"] + state["epoch"])
        if state.get("run_token") == config["fault_tolerance"]["run_token"]:
            # A restart inside this run: its start-up was the first attempt's.
            timer.first_batch_time = state["first_batch_time"]
        runtime.log(f"ray worker {rank}: restored the epoch {state['epoch']} checkpoint "
                    f"(weights and optimizer state), resuming at epoch {state['epoch'] + 1}")
    ray.get(config["collector"].start_attempt.remote(rank, {
        "resumed_from_epoch": state["epoch"],
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "started": time.time(),
    }))
    return state["epoch"]


def make_callback(tf, config, rank, timer, step_counter):
    """A Keras callback: notes the attempt's first batch, checkpoints at every epoch end.

    Put it after the timer and the step counter in `callbacks`, so that the epoch it
    saves is already in their lists.
    """
    import numpy as np
    import ray.train

    collector = config["collector"]
    enabled = config["fault_tolerance"]["checkpoint"]
    run_token = config["fault_tolerance"]["run_token"]

    class FaultTolerance(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.first_batch_seen = False

        def on_train_batch_begin(self, batch, logs=None):
            if not self.first_batch_seen:
                self.first_batch_seen = True
                collector.attempt_event.remote(rank, "first_batch", time.time())

        def on_epoch_end(self, epoch, logs=None):
            if not enabled:
                return
            # Every worker reads the weights: the batch-norm statistics are averaged across
            # workers by a collective, which waits for all of them.
            weights = self.model.get_weights()
            optimizer_weights = [variable.numpy() for variable in self.model.optimizer.variables()]
            with tempfile.TemporaryDirectory(prefix="ray-demo-checkpoint-") as folder:
                checkpoint = None
                if rank == 0:
                    np.savez(os.path.join(folder, WEIGHTS_FILE), *weights)
                    np.savez(os.path.join(folder, OPTIMIZER_FILE), *optimizer_weights)
                    state = {
                        "epoch": epoch + 1,
                        "epoch_times_seconds": list(timer.epoch_times),
                        "epoch_cpu_seconds": list(timer.epoch_cpu_seconds),
                        "epoch_page_faults": list(timer.epoch_page_faults),
                        "history": list(timer.history),
                        "steps_per_epoch": list(step_counter.steps_per_epoch),
                        "first_batch_time": timer.first_batch_time,
                        "run_token": run_token,
                        "saved": time.time(),
                    }
                    with open(os.path.join(folder, STATE_FILE), "w", encoding="utf-8") as out:
                        json.dump(state, out)
                    checkpoint = ray.train.Checkpoint.from_directory(folder)
                # Every worker reports, the same number of times: report is a barrier.
                ray.train.report({"epoch": epoch + 1}, checkpoint=checkpoint,
                                 checkpoint_dir_name=f"epoch-{epoch + 1:04d}")
            if rank == 0:
                collector.attempt_event.remote(rank, "checkpoint", time.time(), epoch + 1)

    return FaultTolerance()


class AttemptTracker:
    """Mixed into the driver's collector actor: one entry per worker per attempt.

    Ray Train restarts the whole worker group, so a rank's k-th registration belongs to
    attempt k. Restarts are the attempts after the first.
    """

    def __init__(self):
        self.attempt_log = []
        self.attempt_events = []

    def start_attempt(self, rank, info):
        attempt = 1 + sum(1 for entry in self.attempt_log if entry["rank"] == rank)
        self.attempt_log.append(dict(info, rank=rank, attempt=attempt))
        return attempt

    def attempt_event(self, rank, kind, when, epoch=None):
        attempt = sum(1 for entry in self.attempt_log if entry["rank"] == rank)
        self.attempt_events.append({"rank": rank, "attempt": attempt, "kind": kind,
                                    "time": when, "epoch": epoch})

    def get_attempts(self):
        return {"log": list(self.attempt_log), "events": list(self.attempt_events)}


def summarize_attempts(attempts, failure=None):
    """The restart facts for the results JSON, from the collector's attempt log.

    `failure` is what scripts/chaos.sh wrote when it killed a node (its time), if it did:
    then the time lost to that failure is measured from the run's own timeline.
    """
    by_attempt = {}
    for entry in attempts["log"]:
        by_attempt.setdefault(entry["attempt"], []).append(entry)
    for event in attempts["events"]:
        if event["attempt"] in by_attempt and event["kind"] == "first_batch":
            bucket = by_attempt[event["attempt"]]
            for entry in bucket:
                if entry["rank"] == event["rank"]:
                    entry["first_batch"] = event["time"]
    summary = []
    for number in sorted(by_attempt):
        entries = sorted(by_attempt[number], key=lambda entry: entry["rank"])
        first_batches = [entry["first_batch"] for entry in entries if "first_batch" in entry]
        summary.append({
            "attempt": number,
            "resumed_from_epoch": entries[0]["resumed_from_epoch"],
            "started": min(entry["started"] for entry in entries),
            "first_batch": min(first_batches) if first_batches else None,
            "nodes": {str(entry["rank"]): entry["node_id"] for entry in entries},
        })
    checkpoints = [{"epoch": event["epoch"], "time": event["time"], "attempt": event["attempt"]}
                   for event in attempts["events"] if event["kind"] == "checkpoint"]
    facts = {
        "restarts": max(len(summary) - 1, 0),
        "restart_resumed_from_epochs": [attempt["resumed_from_epoch"] for attempt in summary[1:]],
        "resumed_from_epoch": summary[0]["resumed_from_epoch"] if summary else 0,
        "attempts": summary,
        "checkpoints_saved": checkpoints,
    }
    if failure and len(summary) >= 2:
        facts["injected_failure"] = dict(failure, **recovery_timeline(summary, checkpoints, failure))
    elif failure:
        facts["injected_failure"] = dict(failure)
    return facts


def recovery_timeline(attempts, checkpoints, failure):
    """How long one worker failure cost, from the run's own clock.

    - detect_and_restart_seconds: the kill to the first batch of the next attempt (Ray
      notices the dead node, tears the group down, places a new one, TensorFlow starts,
      the checkpoint loads).
    - redone_seconds: the last saved checkpoint to the kill: work done again.
    - time_lost_seconds: their sum, the checkpoint to the next attempt's first batch.
    """
    kill_time = failure["time"]
    later = [attempt for attempt in attempts if attempt["started"] >= kill_time - 1]
    resumed = later[0] if later else attempts[-1]
    saved_before = [checkpoint for checkpoint in checkpoints if checkpoint["time"] <= kill_time]
    last_saved = max((checkpoint["time"] for checkpoint in saved_before), default=None)
    timeline = {"resumed_attempt": resumed["attempt"],
                "resumed_from_epoch": resumed["resumed_from_epoch"]}
    if resumed.get("first_batch") is not None:
        timeline["detect_and_restart_seconds"] = resumed["first_batch"] - kill_time
        if last_saved is not None:
            timeline["redone_seconds"] = kill_time - last_saved
            timeline["time_lost_seconds"] = resumed["first_batch"] - last_saved
    return timeline


# --------------------------------------------------------------------------------------
# Driver side: names, the run's folder, resuming, live progress.
# --------------------------------------------------------------------------------------

def plan_run(storage_path, run_name, resume, settings_for_resume):
    """Decide the run's name and folder; check a resumed run matches its settings.

    `resume` is False, or True to continue `run_name` (or, without a name, the most recent
    run in `storage_path` that did not complete). Returns (run_name, run_dir, resuming).
    """
    storage_path = storage.normalize(storage_path)
    if not resume:
        name = run_name or f"ray-demo-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        run_dir = storage.join(storage_path, name)
        # Ray Train would silently resume a folder holding its snapshot: make that explicit.
        if any(storage.exists(storage.join(run_dir, name)) for name in (STATUS_FILE, RAY_SNAPSHOT_FILE)):
            raise ValueError(f"A run named '{name}' already exists in {storage_path}. Resume it "
                             "(--resume, RESUME=1) or choose another --run-name (RUN_NAME).")
        return name, run_dir, False
    name = run_name or _latest_unfinished_run(storage_path)
    run_dir = storage.join(storage_path, name)
    status = read_json(storage.join(run_dir, STATUS_FILE))
    if status is None:
        raise ValueError(f"There is no run '{name}' to resume in {storage_path}. List the runs "
                         f"there (ls {storage_path}) or start a new one without --resume (RESUME=0).")
    if status.get("status") == "completed":
        raise ValueError(f"Run '{name}' already completed ({status.get('results')}); there is "
                         "nothing to resume. Start a new run without --resume (RESUME=0).")
    if status.get("status") == "running" and _process_alive(status.get("pid")):
        raise ValueError(f"Run '{name}' is still running (pid {status.get('pid')}). Wait for it "
                         "or stop it before resuming.")
    previous = status.get("settings", {})
    different = [f"{key} {previous.get(key)} -> {settings_for_resume.get(key)}" for key in RESUME_KEYS
                 if key in previous and previous.get(key) != settings_for_resume.get(key)]
    if different:
        raise ValueError(f"Run '{name}' cannot be resumed with other settings: {', '.join(different)}. "
                         "Use the settings it started with, or start a new run (RESUME=0).")
    return name, run_dir, True


def _latest_unfinished_run(storage_path):
    candidates = []
    for name in storage.list_folders(storage_path):
        status = read_json(storage.join(storage_path, name, STATUS_FILE))
        if status and status.get("status") != "completed":
            candidates.append((status.get("updated", 0), name))
    if not candidates:
        raise ValueError(f"There is no interrupted run to resume in {storage_path}. Start one with "
                         "checkpoints (--checkpoint, CHECKPOINT=1), or pass --storage-path "
                         "(CHECKPOINT_DIR) where it was saved.")
    return max(candidates)[1]


def _process_alive(pid):
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def read_json(path):
    """The JSON object in `path` (local or s3://), or None when it is missing or unreadable."""
    return storage.read_json(path)


def write_status(run_dir, status, **facts):
    """Mark the run's own folder running, completed, interrupted or failed (atomically)."""
    previous = read_json(storage.join(run_dir, STATUS_FILE)) or {}
    previous.update(facts, status=status, updated=time.time(), pid=os.getpid())
    storage.write_json(storage.join(run_dir, STATUS_FILE), previous)


def registered_epoch(run_dir):
    """The epoch of the latest checkpoint Ray Train registered for this run (0 if none)."""
    snapshot = read_json(storage.join(run_dir, RAY_SNAPSHOT_FILE)) or {}
    latest = snapshot.get("latest_checkpoint_result") or {}
    return int((latest.get("metrics") or {}).get("epoch", 0))


class ProgressMonitor:
    """A driver thread: polls the collector, writes progress.json, logs each new attempt."""

    def __init__(self, ray, collector, run_dir, interval_seconds=1.0):
        self.ray = ray
        self.collector = collector
        self.run_dir = run_dir
        self.interval_seconds = interval_seconds
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="progress-monitor", daemon=True)
        self.attempts_logged = 0
        self.epoch_logged = 0

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop_event.set()
        self.thread.join(timeout=10)

    def _loop(self):
        while not self.stop_event.wait(self.interval_seconds):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - progress is best effort; training goes on
                pass

    def poll(self):
        attempts = self.ray.get(self.collector.get_attempts.remote(), timeout=10)
        facts = summarize_attempts(attempts)
        epoch = registered_epoch(self.run_dir)
        for attempt in facts["attempts"][self.attempts_logged:]:
            if attempt["attempt"] == 1:
                start = (f"resuming an interrupted run at epoch {attempt['resumed_from_epoch'] + 1}"
                         if attempt["resumed_from_epoch"] else "from epoch 1")
                runtime.log(f"fault tolerance: attempt 1 started {start}")
            else:
                runtime.log(f"fault tolerance: RESTART {attempt['attempt'] - 1}: a new worker group "
                            f"(attempt {attempt['attempt']}) resumes from the epoch "
                            f"{attempt['resumed_from_epoch']} checkpoint, on nodes "
                            f"{', '.join(node[:8] for node in attempt['nodes'].values())}")
        self.attempts_logged = len(facts["attempts"])
        if epoch > self.epoch_logged:
            runtime.log(f"fault tolerance: checkpoint of epoch {epoch} registered in {self.run_dir}")
            self.epoch_logged = epoch
        storage.write_json(storage.join(self.run_dir, PROGRESS_FILE), {
            "registered_checkpoint_epoch": epoch,
            "restarts": facts["restarts"],
            "attempts": facts["attempts"],
            "updated": time.time(),
        })


DEFAULT_STORAGE_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "checkpoints")


def storage_root(storage_path, checkpoint):
    """Where Ray Train keeps the run: the given path, the repo's checkpoints/ when saving
    checkpoints, else Ray's default. Absolute, since workers run in other directories."""
    if storage_path:
        return storage.normalize(storage_path)
    return DEFAULT_STORAGE_PATH if checkpoint else os.path.expanduser("~/ray_results")


class StatusGuard:
    """Marks the run's folder running, then completed, failed or interrupted.

    Ray Train V2's own Ctrl-C handler ends the driver with SystemExit(0); an interrupted
    run must not look like a success, so both interrupts leave as KeyboardInterrupt.
    """

    def __init__(self, run_dir, **facts):
        self.run_dir = run_dir
        self.facts = facts
        self.completed_facts = {}

    def __enter__(self):
        write_status(self.run_dir, "running", **self.facts)
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            write_status(self.run_dir, "completed", **self.completed_facts)
            return False
        if issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            write_status(self.run_dir, "interrupted", error="interrupted (Ctrl-C or SIGTERM)")
            raise KeyboardInterrupt from None
        write_status(self.run_dir, "failed", error=f"{exc_type.__name__}: {exc}"[:4000])
        return False
