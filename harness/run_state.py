"""The driver's bookkeeping of a Ray Train run: its name and folder, its status and progress
files, its restarts, and its results file at the end.

- Naming and resuming: a run lives in `storage_path/run_name/` (Ray Train's own files and
  ours). `--resume` continues the latest interrupted run there, with the settings it
  started with (Ray Train V2 has no `Trainer.restore`: a trainer started with the same
  `RunConfig(storage_path, name)` resumes it).
- Status and progress: `run_status.json` says running, completed, failed or interrupted;
  `progress.json`, written by a driver thread while the run trains, holds the epoch of the
  latest registered checkpoint and each worker group attempt (scripts/chaos.sh reads it to
  choose its moment). Each attempt registers with the ResultsCollector actor (the
  AttemptTracker below), so the driver counts restarts itself and logs each as it happens.
- The results: the workers' records become `ray_results_<N>workers.json` (results.py),
  with the restarts and, after scripts/chaos.sh, the timeline of the injected failure.
"""

import contextlib
import os
import threading
import time

from harness import results, storage
from lesson import workarounds
from harness.records import log

# Files the driver keeps in the run's folder, beside Ray Train's own.
STATUS_FILE = "run_status.json"
PROGRESS_FILE = "progress.json"
FAILURE_FILE = "injected_failure.json"
# Ray Train V2 writes this after it registers a checkpoint; a checkpoint folder alone may
# still be half copied, so the epoch a restart would resume from is read from here.
RAY_SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"
# Settings a resumed run must share with the run it continues (epochs may grow).
RESUME_KEYS = ("dataset", "train_size", "test_size", "batch_size", "num_workers", "seed", "learning_rate",
               "lr_scaling", "allreduce_dtype")
DEFAULT_STORAGE_PATH = os.path.join(results.REPO_ROOT, "checkpoints")


class RayRun:
    """One Ray Train run, seen from the driver. Everything that needs no cluster is checked
    when it is made, so that bad settings fail before any cluster work."""

    def __init__(self, settings, plan, results_dir, storage_path=None, checkpoint=False,
                 resume=False, run_name=None, max_failures=2):
        self.start = time.time()
        self.settings, self.plan, self.results_dir = settings, plan, results_dir
        results.check_writable(results_dir)
        self.checkpoint = checkpoint or resume
        self.max_failures = max_failures
        self.storage_path = storage_root(storage_path, self.checkpoint)
        storage.prepare(self.storage_path)
        self.name, self.dir, self.resuming = plan_run(self.storage_path, run_name, resume, settings)
        self.token = f"{self.name}-{self.start}"
        self.trainer_start = None

    def ray_storage(self):
        """RunConfig's storage arguments: where Ray Train keeps the run's state and checkpoints."""
        return storage.ray_storage(self.storage_path)

    def worker_settings(self):
        """What the workers' fault_tolerance.epoch_checkpoints needs to know."""
        return {"checkpoint": self.checkpoint, "run_token": self.token}

    def describe(self, cluster):
        settings = self.settings
        log(f"ray: {settings['num_workers']} workers x {settings['cpus_per_worker']} CPU(s) on "
            f"{len(cluster['nodes'])} nodes; {settings['dataset']} {settings['train_size']} train / "
            f"{settings['test_size']} test, {settings['epochs']} epochs, batch {settings['batch_size']} per "
            f"worker ({self.plan['global_batch_size']} global)")
        log(f"ray: run '{self.name}' in {self.dir}; checkpoints every epoch: "
            f"{'yes' if self.checkpoint else 'no (--checkpoint, CHECKPOINT=1)'}; up to {self.max_failures} "
            f"restarts{'; resuming' if self.resuming else ''}")

    @contextlib.contextmanager
    def tracking(self, ray, collector):
        """Around trainer.fit(): the status file, progress.json and the restarts as they
        happen. An interrupted run (Ctrl-C, SIGTERM) leaves as KeyboardInterrupt, marked
        interrupted, even when Ray Train handled the signal and returned normally."""
        write_status(self.dir, "running", settings=self.settings, checkpoint=self.checkpoint)
        self.trainer_start = time.time()
        try:
            with ProgressMonitor(ray, collector, self.dir), workarounds.noting_sigint() as interrupted:
                yield
            if interrupted.is_set():
                raise KeyboardInterrupt
        except (KeyboardInterrupt, SystemExit):
            # Ray Train V2's own Ctrl-C handler ends the driver with SystemExit(0).
            write_status(self.dir, "interrupted", error="interrupted (Ctrl-C or SIGTERM)")
            raise KeyboardInterrupt from None
        except Exception as error:
            write_status(self.dir, "failed", error=f"{type(error).__name__}: {error}"[:4000])
            raise

    def results(self, ray, collector, cluster):
        """Write ray_results_<N>workers.json from the workers' records; mark the run completed."""
        try:
            record = results.ray_record(self.settings, self.plan, self.start, self.trainer_start, cluster,
                                        ray.get(collector.get_all.remote()))
            record.update(summarize_attempts(ray.get(collector.get_attempts.remote()),
                                             read_json(storage.join(self.dir, FAILURE_FILE))))
            record.update(run_name=self.name, run_dir=self.dir, checkpointing=self.checkpoint,
                          max_failures=self.max_failures)
            path = os.path.join(self.results_dir, results.ray_file(self.settings["num_workers"]))
            results.write(record, self.start, path)
            nodes = len({worker["node_id"] for worker in record["workers"]})
            log(f"ray: {results.summary_line(record)}; {self.settings['num_workers']} workers on {nodes} "
                f"node(s), weights identical: {record['weights_identical']} -> {path}")
            if not record["weights_identical"]:
                raise RuntimeError("The workers finished with different weights: gradients were not synchronised. "
                                   f"Checksums: {sorted({worker['weights_checksum'] for worker in record['workers']})}")
        except Exception as error:
            write_status(self.dir, "failed", error=f"{type(error).__name__}: {error}"[:4000])
            raise
        write_status(self.dir, "completed", results=path)
        return record


# ---------------------------------------------------------------- naming and resuming


def storage_root(storage_path, checkpoint):
    """Where Ray Train keeps the run: the given path, the repo's checkpoints/ when saving
    checkpoints, else Ray's default. Absolute, since workers run in other directories."""
    if storage_path:
        return storage.normalize(storage_path)
    return DEFAULT_STORAGE_PATH if checkpoint else os.path.expanduser("~/ray_results")


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
        if any(storage.exists(storage.join(run_dir, file)) for file in (STATUS_FILE, RAY_SNAPSHOT_FILE)):
            raise ValueError(f"A run named '{name}' already exists in {storage_path}. Resume it "
                             "(--resume, RESUME=1) or choose another --run-name.")
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


# ---------------------------------------------------------------- status and progress


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
        self.ray, self.collector, self.run_dir = ray, collector, run_dir
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
        facts = summarize_attempts(self.ray.get(self.collector.get_attempts.remote(), timeout=10))
        epoch = registered_epoch(self.run_dir)
        for attempt in facts["attempts"][self.attempts_logged:]:
            if attempt["attempt"] == 1:
                start = (f"resuming an interrupted run at epoch {attempt['resumed_from_epoch'] + 1}"
                         if attempt["resumed_from_epoch"] else "from epoch 1")
                log(f"fault tolerance: attempt 1 started {start}")
            else:
                log(f"fault tolerance: RESTART {attempt['attempt'] - 1}: a new worker group "
                    f"(attempt {attempt['attempt']}) resumes from the epoch {attempt['resumed_from_epoch']} "
                    f"checkpoint, on nodes {', '.join(node[:8] for node in attempt['nodes'].values())}")
        self.attempts_logged = len(facts["attempts"])
        if epoch > self.epoch_logged:
            log(f"fault tolerance: checkpoint of epoch {epoch} registered in {self.run_dir}")
            self.epoch_logged = epoch
        storage.write_json(storage.join(self.run_dir, PROGRESS_FILE), {
            "registered_checkpoint_epoch": epoch, "restarts": facts["restarts"],
            "attempts": facts["attempts"], "updated": time.time()})


# ---------------------------------------------------------------- restarts


class AttemptTracker:
    """Mixed into the ResultsCollector actor: one entry per worker per attempt.

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
        self.attempt_events.append({"rank": rank, "attempt": attempt, "kind": kind, "time": when, "epoch": epoch})

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
            for entry in by_attempt[event["attempt"]]:
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
    timeline = {"resumed_attempt": resumed["attempt"], "resumed_from_epoch": resumed["resumed_from_epoch"]}
    if resumed.get("first_batch") is not None:
        timeline["detect_and_restart_seconds"] = resumed["first_batch"] - kill_time
        if last_saved is not None:
            timeline["redone_seconds"] = kill_time - last_saved
            timeline["time_lost_seconds"] = resumed["first_batch"] - last_saved
    return timeline
