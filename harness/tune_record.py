"""What a Tune search measured, way by way (lesson/ray_tune.py): each trial's configuration,
status and test accuracy after every epoch with its time since the way began (taken in the
driver, from a Tune callback, so no storage shared by the nodes is needed), each way's wall
time and the machine's CPU utilisation meanwhile. Written to tune_results.json after every
event, so that an interrupted search leaves a true record of how far it got.
"""

import contextlib
import os
import time

from ray import tune

from harness import cluster_checks, results

RESULTS_FILE = "tune_results.json"


def parse_list(text, convert, name, flag):
    """'5e-4,2e-3' as numbers greater than 0, or a ValueError naming the flag."""
    values = []
    for part in text.split(","):
        try:
            value = convert(part.strip())
        except ValueError:
            value = None
        if value is None or not value > 0:
            kind = "whole numbers" if convert is int else "numbers"
            raise ValueError(f"{flag} ({name}) must be {kind} greater than 0, separated by commas; got '{text}'.")
        values.append(value)
    if len(set(values)) != len(values):
        raise ValueError(f"{flag} ({name}) lists a value twice: '{text}'.")
    return values


def cpu_times():
    """(busy, total) jiffies of the whole machine, from /proc/stat; None where it is missing."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


class TrialLog(tune.Callback):
    """Runs in the driver: every trial's start, epochs, end, error and early stop."""

    def __init__(self, record, way):
        self.record, self.way, self.start = record, way, time.time()

    def trial(self, trial, status="running"):
        trials = self.way["trials"]
        if trial.trial_id not in trials:
            config = {key: trial.config[key] for key in ("learning_rate", "global_batch_size")}
            trials[trial.trial_id] = {"config": config, "status": "pending", "epochs": [], "error": None,
                                      "started_seconds": None}
        entry = trials[trial.trial_id]
        if status == "running" and entry["status"] == "pending":
            entry.update(status="running", started_seconds=round(time.time() - self.start, 2))
        return entry

    def on_step_end(self, iteration, trials, **info):
        # A trial waiting for CPUs is in the record too, so that a stopped search says what never ran.
        waiting = [trial for trial in trials if trial.status == "PENDING" and trial.trial_id not in self.way["trials"]]
        for trial in waiting:
            self.trial(trial, "pending")
        if waiting:
            self.record.save()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.trial(trial)
        self.record.save()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.trial(trial)["epochs"].append({
            "epoch": int(result["epoch"]), "val_accuracy": result["val_accuracy"], "val_loss": result["val_loss"],
            "seconds": round(time.time() - self.start, 2)})
        self.record.save()

    def on_trial_complete(self, iteration, trials, trial, **info):
        # ASHA's stop ends a trial as complete, with fewer epochs than the recipe's.
        epochs = len(self.trial(trial)["epochs"])
        self.ended(trial, "completed" if epochs >= self.record.recipe.epochs else "stopped early")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended(trial, "error", error_summary(trial))

    def ended(self, trial, status, error=None):
        entry = self.trial(trial)
        entry.update(status=status, error=error, ended_seconds=round(time.time() - self.start, 2))
        config, epochs = entry["config"], entry["epochs"]
        outcome = f"test accuracy {epochs[-1]['val_accuracy']:.4f} after {len(epochs)} epoch(s)" if epochs else ""
        print(f"[tune] {self.way['way']}: learning rate {config['learning_rate']:g}, global batch "
              f"{config['global_batch_size']}: {status} at {entry['ended_seconds']:.1f} s"
              + (f", {outcome}" if outcome else "") + (f": {error}" if error else ""), flush=True)
        self.record.save()


def error_summary(trial):
    """The last line of a failed trial's error: what went wrong, in its own words."""
    text = ""
    with contextlib.suppress(OSError, TypeError, AttributeError):
        with open(trial.error_file, encoding="utf-8") as error_file:
            text = error_file.read()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "the trial failed (no error message was kept)"


class SearchRecord:
    """The search's settings, checked at once, and its results file."""

    def __init__(self, results_dir, recipe, ways, learning_rates, global_batches, known_ways, address):
        self.recipe = recipe
        self.ways = [way.strip() for way in ways.split(",") if way.strip()]
        unknown = [way for way in self.ways if way not in known_ways]
        if unknown or not self.ways or len(set(self.ways)) != len(self.ways):
            raise ValueError(f"--ways (WAYS) '{ways}' must list some of {', '.join(known_ways)}, each once.")
        self.learning_rates = parse_list(learning_rates, float, "LEARNING_RATES", "--learning-rates")
        self.global_batches = parse_list(global_batches, int, "GLOBAL_BATCHES", "--global-batches")
        cluster_checks.check_address_answers(address)  # seconds, not a minute of retries
        results.check_writable(results_dir)
        self.path = os.path.join(results_dir, RESULTS_FILE)
        # Tune's own files (each trial's params and results) go beside the record.
        self.storage_path = os.path.abspath(os.path.join(results_dir, "tune-trials"))
        self.data = {"status": "running", "recipe": recipe.as_dict(), "ways_requested": self.ways,
                     "learning_rates": self.learning_rates, "global_batches": self.global_batches,
                     "host": results.host_facts(), "versions": results.versions(),
                     "command": results.pasteable_command(), "ways": []}
        self.save()

    def save(self):
        results.write_json_atomic(self.path, self.data)

    def require_cpus(self, ray):
        """Every way gets the CPUs of N workers; a cluster without them fails here, in words."""
        cluster = cluster_checks.check_capacity(ray, self.recipe.num_workers, self.recipe.cpus_per_worker)
        self.data["cluster"] = cluster
        self.save()

    @contextlib.contextmanager
    def way(self, name):
        """Time one way and yield the callbacks that log its trials."""
        way = {"way": name, "status": "running", "trials": {}, "cores": os.cpu_count()}
        self.data["ways"].append(way)
        callback, before = TrialLog(self, way), cpu_times()
        print(f"[tune] way {len(self.data['ways'])}/{len(self.ways)}: {name}", flush=True)
        try:
            yield [callback]
            way["status"] = "finished"
        except BaseException as error:
            way["status"] = self.data["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            for trial in way["trials"].values():  # stopped with the search
                if trial["status"] in ("running", "pending"):
                    trial["status"] = way["status"] if trial["status"] == "running" else "not started"
            raise
        finally:
            way["wall_seconds"] = round(time.time() - callback.start, 2)
            after = cpu_times()
            if before and after and after[1] > before[1]:
                way["cpu_utilisation"] = round((after[0] - before[0]) / (after[1] - before[1]), 3)
            print(f"[tune] {name}: {way['wall_seconds']:.1f} s, trials: " + ", ".join(
                f"{trial['status']}" for trial in way["trials"].values()), flush=True)
            if self.data["status"] == "running" and len(self.data["ways"]) == len(self.ways) \
                    and way["status"] == "finished":
                self.data["status"] = "finished"
            self.save()
