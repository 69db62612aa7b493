"""Is the recipe long enough for the comparison to mean something? Three named checks, each
with the runs and the targets it affects (issue 22: `EPOCHS=2 TRAIN_SIZE=2048` gave test
accuracies 10 points apart and a "steady state" of one epoch, and nothing warned).

- Throughput, settling: every run compared must have settled by the steady-state rule
  (harness/steady_state.py: 3 epochs at least, and the last no more than 5% faster than the
  one before). Until then the speedup depends on how many epochs were run, so it is not given.
- Throughput, steps per epoch: each worker must take at least MIN_STEPS_PER_EPOCH steps an
  epoch. With fewer, one step twice as slow as the others moves the epoch's time by more than
  the rule's 5%, so the per-epoch speeds cannot show whether the run settled.
- Accuracy, plateau: the validation accuracy of the baseline and of Ray must have levelled
  off: each run's last epoch added at most PLATEAU_POINTS points. While a curve still climbs
  faster than that, a tenth of an epoch's progress is worth more than the 1-point accuracy
  target, and the difference between two runs says little. In the committed runs of 4,096
  images or more the last epoch added at most 3.6 points, and the two accuracies agreed
  within a point; in the 3-epoch runs of 2,048 images of docs/results/monitoring/ it added
  23.7 and 34.3 points (they agreed, by luck); in the 2-epoch runs of 2,048 images of
  docs/results/batch_curve/ it added 39.5 and 14.1, and they were 12.89 points apart.

compare.py stores the warnings in comparison.json (`recipe_warnings`) and prints them;
targets.py sets each beside the targets it affects, and the accuracy target is not judged
while the accuracy still climbs.
"""

from harness import steady_state

MIN_STEPS_PER_EPOCH = round(1 / steady_state.SETTLED_WITHIN)  # one doubled step: 1/20 = 5% of an epoch
PLATEAU_POINTS = 5.0  # validation accuracy added by the last epoch, in points: levelled off at or below
RUN_NAMES = {"baseline": "the baseline", "tensorflow_alone": "TensorFlow alone", "ray": "Ray Train"}


def recipe_warnings(baseline, ray_run, tensorflow_alone=None):
    """Where the recipe is too short, empty when the comparison means what it says: each a dict
    with `check` (settling, steps or plateau), `affects` (throughput or accuracy), `runs` (keys
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
    steps = ray_run.get("steps_per_epoch")
    if steps is not None and steps < MIN_STEPS_PER_EPOCH:
        found.append({"check": "steps", "affects": "throughput", "runs": list(runs),
                      "short": f"{plural(steps, 'step')} per worker per epoch ({MIN_STEPS_PER_EPOCH} at least)",
                      "text": f"{plural(steps, 'step')} per worker per epoch, fewer than {MIN_STEPS_PER_EPOCH}: one "
                              "step twice as slow as the others moves an epoch's time by more than "
                              f"{steady_state.SETTLED_WITHIN:.0%}, the steady-state rule's threshold. More images "
                              "(TRAIN_SIZE) give each epoch more steps."})
    climbing = accuracy_warning({"baseline": baseline, "ray": ray_run})
    if climbing:
        found.append(climbing)
    return found


def accuracy_warning(runs):
    """The plateau check on the baseline and Ray runs, or None when both levelled off."""
    gains, short = {}, []
    for key, run in runs.items():
        accuracies = [entry.get("val_accuracy") for entry in run.get("history") or []]
        if None in accuracies:
            return None  # not recorded: nothing to judge by
        if len(accuracies) < 2:
            short.append(key)
        else:
            gains[key] = (accuracies[-1] - accuracies[-2]) * 100
    if short:
        gist = f"{_names(short)}: 1 epoch, no accuracy curve"
        text = (f"{_sentence(_names(short))} trained 1 epoch: nothing shows whether the accuracy levelled off, "
                "so the accuracy difference says little. Run 2 epochs or more.")
    elif any(round(gain, 6) > PLATEAU_POINTS for gain in gains.values()):  # rounded: 0.85 - 0.80 is 5.000...04
        added = " and ".join(f"{gain:+.1f} points to {RUN_NAMES[key]}'s" for key, gain in gains.items())
        gist = (f"accuracy still climbing (the last epoch: {', '.join(f'{gain:+.1f}' for gain in gains.values())} "
                f"points; {PLATEAU_POINTS:g} at most)")
        text = (f"the accuracy was still climbing: the last epoch added {added} validation accuracy "
                f"(levelled off: {PLATEAU_POINTS:g} points or fewer). While it climbs, a fraction of an epoch's "
                "progress is several points, so the accuracy difference says little. Train longer (EPOCHS, "
                "TRAIN_SIZE).")
    else:
        return None
    return {"check": "plateau", "affects": "accuracy", "runs": sorted(gains) + short, "short": gist, "text": text}


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
