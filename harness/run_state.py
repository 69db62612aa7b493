"""The driver's bookkeeping of a Ray Train run: its name and folder, its status and progress
files, its restarts, and its results file at the end.

- Naming and resuming: a run lives in `storage_path/run_name/` (Ray Train's own files and
  ours). Ray Train V2 needs a storage path even when nothing is kept: a run without
  checkpoints lives in a temporary folder, removed when it ends. `--resume` continues the
  latest interrupted run there, with the settings it started with (Ray Train V2 has no
  `Trainer.restore`: a trainer started with the same `RunConfig(storage_path, name)` resumes it).
- Status and progress: `run_status.json` says running, completed, failed or interrupted;
  `progress.json`, written by a driver thread while the run trains, holds the epoch of the
  latest registered checkpoint and each worker group attempt (scripts/experiments/chaos.sh reads it to
  choose its moment). Each attempt registers with the ResultsCollector actor (the
  AttemptTracker of attempts.py), so the driver counts restarts itself and logs each as it happens.
- The results: the workers' records become `ray_results_<N>workers.json` (results.py),
  with the restarts and, after scripts/experiments/chaos.sh, the timeline of the injected failure.
"""

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
import time

from harness import cluster_checks, interrupts, loopback, results, storage, switches
from harness.attempts import summarize_attempts
from harness.collector import start_collector
from lesson import workarounds
from lesson.workarounds import log

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
    """One Ray Train run, seen from the driver: the lesson's one object of the harness.
    Everything that needs no cluster is checked when it is made, so that bad settings fail
    before any cluster work; `start_workers` checks the cluster and starts the collector,
    `fit` runs the trainer and writes the results."""

    def __init__(self, recipe, plan, results_dir, address, storage_path=None, checkpoint=False,
                 resume=False, run_name=None):
        self.start = time.time()
        switches.check_all()  # a bad DEMO_* switch fails here, before any cluster work
        self.recipe, self.plan, self.results_dir = recipe, plan, results_dir
        self.settings = results.record_settings(recipe)
        results.check_writable(results_dir)
        self.checkpoint = checkpoint or resume
        self.temporary_storage = None if self.checkpoint else tempfile.mkdtemp(prefix="ray-demo-run-")
        if self.temporary_storage:
            atexit.register(self.remove_temporary_storage)  # also when the run fails before fit
        self.storage_path = self.temporary_storage or storage_root(storage_path)
        storage.prepare(self.storage_path)
        self.name, self.dir, self.resuming = plan_run(self.storage_path, run_name, resume, self.settings)
        self.token = f"{self.name}-{self.start}"
        self.checkpoints = {"checkpoint": self.checkpoint, "run_token": self.token}
        self.trainer_start = self.collector = self.cluster = None
        cluster_checks.check_address_answers(address)
        loopback.driver_on_loopback(address)  # a local cluster listens on loopback only

    def ray_storage(self):
        """RunConfig's storage arguments: where Ray Train keeps the run's state and checkpoints."""
        return storage.ray_storage(self.storage_path)

    def start_workers(self, ray):
        """Check that the workers fit the cluster (else Ray waits forever), start the
        collector their records go home to, and say what runs; returns what every worker's
        harness needs (harness/instruments.py)."""
        self.cluster = cluster_checks.check_capacity(ray, self.recipe.num_workers, self.recipe.cpus_per_worker)
        self.collector = start_collector(ray)
        self.describe(self.cluster)
        return {"collector": self.collector, "checkpoint": self.checkpoint}

    def fit(self, ray, trainer):
        """trainer.fit() with the status file, progress and restarts tracked; then the
        workers' records become the results JSON. A run without checkpoints keeps nothing."""
        try:
            with self.tracking(ray, self.collector):
                trainer.fit()
            return self.results(ray, self.collector, self.cluster)
        finally:
            self.remove_temporary_storage()

    def remove_temporary_storage(self):
        """Remove the temporary folder of a run without checkpoints (once; never a kept run's)."""
        if self.temporary_storage:
            shutil.rmtree(self.temporary_storage, ignore_errors=True)
            self.temporary_storage = None

    def describe(self, cluster):
        recipe = self.recipe
        log(f"ray: {recipe.num_workers} workers x {recipe.cpus_per_worker} CPU(s) on "
            f"{len(cluster['nodes'])} nodes; {recipe.dataset} {recipe.train_size} train / "
            f"{recipe.test_size} test, {recipe.epochs} epochs, batch {recipe.batch_size} per "
            f"worker ({self.plan['global_batch_size']} global)")
        where = self.dir if self.checkpoint else "a temporary folder, removed at the end"
        log(f"ray: run '{self.name}' in {where}; checkpoints every epoch: "
            f"{'yes' if self.checkpoint else 'no (--checkpoint, CHECKPOINT=1)'}; up to {recipe.max_failures} "
            f"restarts{'; resuming' if self.resuming else ''}")

    @contextlib.contextmanager
    def tracking(self, ray, collector):
        """Around trainer.fit(): the status file, progress.json and the restarts as they
        happen. An interrupted run (Ctrl-C, SIGTERM) leaves as KeyboardInterrupt, marked
        interrupted, even when Ray Train handled the signal and returned normally."""
        write_status(self.dir, "running", settings=self.settings, checkpoint=self.checkpoint)
        self.trainer_start = time.time()
        try:
            with ProgressMonitor(ray, collector, self.dir), interrupts.noting_sigint() as interrupted, \
                    interrupts.terminate_as_interrupt():
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
            record.update(run_name=self.name, run_dir=self.dir if self.checkpoint else None,
                          checkpointing=self.checkpoint, max_failures=self.recipe.max_failures)
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


def storage_root(storage_path):
    """Where Ray Train keeps a run with checkpoints: the given path, else the repo's
    checkpoints/. Absolute, since workers run in other directories."""
    return storage.normalize(storage_path) if storage_path else DEFAULT_STORAGE_PATH


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
