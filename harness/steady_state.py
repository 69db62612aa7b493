"""Steady state: which epochs a run's throughput is measured over, by one named rule.

The 5% rule. Epoch 1 never counts: it traces the graph (and, in a Ray run, shares the cores
with the start of Ray Train's helper processes). The run has settled at the first later
epoch that no later epoch beats by more than 5% in images per second; its throughput is the
images of that epoch and of every later one over their seconds. The last epoch has no later
one to show that the speed stopped improving, so a run needs 3 epochs or more to settle, and
a run whose last epoch was more than 5% faster than the one before has not settled: its
speedup would still depend on how many epochs were run (issue 22: a Ray run's epochs kept
getting faster while the baseline's stayed flat, so leaving out the first epoch alone was not
enough).

Why 5%: the committed 3-epoch runs of a steady recipe (docs/results/quickstart/, scaling/)
changed by at most 4.8% from their second epoch to their third, and the targets are judged
on ratios at two decimals; a speed still moving by more than that has not settled.

The harness writes `images_per_second` and `steady_state` into every run's JSON with it,
and the analysis computes it again from `epoch_times_seconds`, so that runs recorded before
the rule are read by it too (compare.py, report.py, levers.py, the scaling sweep).
"""

SETTLED_WITHIN = 0.05  # a later epoch at most 5% faster in images/s: the speed has settled
RULE = ("epoch 1 never counts (it traces the graph); a run has settled at the first later epoch that "
        f"no later epoch beats by more than {SETTLED_WITHIN:.0%} in images/s, and its throughput counts "
        "that epoch and every later one, so a run needs 3 epochs or more to settle")


class SteadyState:
    """The rule applied to one run's epoch times (seconds of training steps per epoch)."""

    def __init__(self, samples_per_epoch, epoch_times):
        self.samples_per_epoch = samples_per_epoch
        self.epoch_times = [float(seconds) for seconds in epoch_times]
        self.settled_from = settled_from(self.epoch_times)

    @property
    def settled(self):
        return self.settled_from is not None

    @property
    def counted_epochs(self):
        """The epochs the throughput counts, numbered from 1 (none when the run did not settle)."""
        return list(range(self.settled_from, len(self.epoch_times) + 1)) if self.settled else []

    @property
    def images_per_second(self):
        """The steady-state throughput, or None when the run did not settle."""
        return images_per_second(self.samples_per_epoch, self.epoch_times, self.counted_epochs)

    def epoch_images_per_second(self):
        """Images per second of each epoch, in order (the per-epoch curve)."""
        return [self.samples_per_epoch / seconds if seconds > 0 else None for seconds in self.epoch_times]

    def verdict(self):
        """In words: from which epoch the run settled, or why it did not."""
        count = len(self.epoch_times)
        if self.settled:
            first, last = self.counted_epochs[0], self.counted_epochs[-1]
            return f"settled from epoch {first} (epochs {first}-{last} counted)"
        if count == 0:
            return "no epoch recorded"
        if count < 3:
            why = "it traces the graph" if count == 1 else \
                "the first traces the graph, and the second has no later one to show that the speed held"
            return f"too short to settle with {_epochs(count)} ({why}; 3 epochs at least)"
        last, before = self.epoch_times[-1], self.epoch_times[-2]
        return (f"not settled: still getting faster, epoch {count} ran {before / last - 1:.1%} faster than "
                f"epoch {count - 1} (the rule allows {SETTLED_WITHIN:.0%})")

    def as_dict(self):
        """What a results JSON and comparison.json hold of it."""
        return {"settled_from_epoch": self.settled_from, "counted_epochs": self.counted_epochs,
                "verdict": self.verdict(), "settled_within": SETTLED_WITHIN}


def _epochs(count):
    return "1 epoch" if count == 1 else f"{count} epochs"


def settled_from(epoch_times):
    """The first epoch (numbered from 1) of the steady state, or None (see the module's rule)."""
    for first in range(2, len(epoch_times)):
        base = epoch_times[first - 1]
        later = epoch_times[first:]
        if base > 0 and all(seconds > 0 and base / seconds - 1 <= SETTLED_WITHIN + 1e-9 for seconds in later):
            return first
    return None


def images_per_second(samples_per_epoch, epoch_times, epochs):
    """Images per second over the given epochs (numbered from 1), or None when there are none."""
    seconds = sum(epoch_times[epoch - 1] for epoch in epochs)
    return samples_per_epoch * len(epochs) / seconds if epochs and seconds > 0 else None


def of_run(run):
    """The rule applied to a run's results record (its JSON)."""
    return SteadyState(run.get("samples_per_epoch") or 0, run.get("epoch_times_seconds") or [])
