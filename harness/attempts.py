"""Worker group attempts: Ray Train restarts the whole group after a failure, and each
attempt of each worker registers with the ResultsCollector actor (AttemptTracker), so that
the driver counts the restarts itself and, after scripts/experiments/chaos.sh, measures what a failure
cost from the run's own timeline. The workers' side is instruments.attempt_events.
"""


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

    `failure` is what scripts/experiments/chaos.sh wrote when it killed a node (its time), if it did:
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
