"""Is the recipe long enough for the comparison to mean something? Each check is named, with
the runs and the targets it affects (issue 22: `EPOCHS=2 TRAIN_SIZE=2048` gave a "steady
state" of one epoch, and nothing warned).

- Throughput, settling: every run compared must have settled by the steady-state rule
  (harness/steady_state.py: 3 epochs at least, and the last no more than 5% faster than the
  one before). Until then the speedup depends on how many epochs were run, so it is not given.

compare.py stores the warnings in comparison.json (`recipe_warnings`) and prints them;
targets.py sets each beside the targets it affects.
"""

from harness import steady_state

RUN_NAMES = {"baseline": "the baseline", "tensorflow_alone": "TensorFlow alone", "ray": "Ray Train"}


def recipe_warnings(baseline, ray_run, tensorflow_alone=None):
    """Where the recipe is too short, empty when the comparison means what it says: each a dict
    with `check` (settling), `affects` (throughput or accuracy), `runs` (keys
    of RUN_NAMES), `text` (the whole warning) and `short` (its gist, beside a target)."""
    runs = {"baseline": baseline, "tensorflow_alone": tensorflow_alone, "ray": ray_run}
    runs = {key: run for key, run in runs.items() if run is not None}
    found = []
    unsettled = {}
    for key, run in runs.items():
        steady = steady_state.of_run(run)
        if not steady.settled:
            unsettled.setdefault((steady.verdict(), _gist(steady)), []).append(key)
    for (verdict, gist), keys in unsettled.items():
        found.append({"check": "settling", "affects": "throughput", "runs": keys,
                      "short": f"{_names(keys)}: {gist}",
                      "text": f"{_sentence(_names(keys))}: {verdict}. No steady-state speedup is given; "
                              "run more epochs (EPOCHS) until each run settles."})
    return found


def _gist(steady):
    """Why a run did not settle, in a few words."""
    count = len(steady.epoch_times)
    if count < 3:
        return f"{plural(count, 'epoch')}, 3 at least to settle"
    return (f"not settled, epoch {count} still {steady.epoch_times[-2] / steady.epoch_times[-1] - 1:.1%} faster than "
            f"epoch {count - 1}")


def affecting(comparison, affects, keys):
    """The gists of a comparison's recipe warnings about `affects` that concern any of `keys`."""
    return [warning["short"] for warning in comparison.get("recipe_warnings") or []
            if warning["affects"] == affects and set(warning["runs"]) & set(keys)]


def unsettled_names(comparison, keys):
    """'the baseline and Ray Train': the runs among `keys` of a comparison that did not settle."""
    return _names([key for key in keys if comparison.get(key)
                   and comparison[key]["steady_state"]["settled_from_epoch"] is None])


def _names(keys):
    names = [RUN_NAMES[key] for key in keys]
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _sentence(text):
    return text[:1].upper() + text[1:]


def plural(count, word):
    """'1 step', '16 steps'."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
