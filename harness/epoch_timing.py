"""The time of each epoch's training steps, the same way in the baseline and in every Ray
worker: the steps run, the CPU time and page faults over the same span, the first batch,
the per-epoch history, and each step in parts (step_timing.py).

An epoch's time runs from its first batch to its last training batch, so that per-epoch
validation is not counted as training time in either run. A process that gets its whole
core shows CPU seconds close to the epoch's seconds; a well-behaved allocator a few
thousand page faults per step (lesson/workarounds.py, section 2).
"""

import resource
import time

from harness.step_timing import StepBreakdown

# The timer's lists, saved in a checkpoint and restored after a restart.
STATE_KEYS = ("epoch_times_seconds", "epoch_cpu_seconds", "epoch_page_faults", "steps_per_epoch", "history",
              "epoch_step_parts")


def epoch_timer():
    """A Keras callback that times each epoch; the other instruments read what it noted."""
    import tensorflow as tf

    class EpochTimer(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_times_seconds = []
            self.epoch_cpu_seconds = []
            self.epoch_page_faults = []
            self.steps_per_epoch = []
            self.history = []
            self.first_batch_time = None
            self.fit_seconds = None
            # Each epoch's steps by part: input, compute, all-reduce, optimizer (step_timing.py).
            self.breakdown = StepBreakdown()
            self.epoch_step_parts = self.breakdown.epochs
            # The last step, for the live metrics: its seconds and its parts.
            self.last_step_seconds, self.last_step_parts = None, None
            self._fit_start = self._batch_begin = self._epoch_start = None
            self._usage_start = self._usage_end = self._last_batch_end = None

        def on_train_begin(self, logs=None):
            self._fit_start = time.time()

        def on_train_end(self, logs=None):
            self.fit_seconds = time.time() - self._fit_start

        def on_epoch_begin(self, epoch, logs=None):
            self.steps_per_epoch.append(0)
            self.breakdown.begin_epoch()

        def on_train_batch_begin(self, batch, logs=None):
            now = time.time()
            self._batch_begin = now
            if self.first_batch_time is None:
                self.first_batch_time = now
            if self._epoch_start is None:
                self._epoch_start = now
                self._usage_start = _usage()

        def on_train_batch_end(self, batch, logs=None):
            self._last_batch_end = time.time()
            self._usage_end = _usage()
            self.steps_per_epoch[-1] += 1
            self.last_step_seconds = self._last_batch_end - self._batch_begin
            self.last_step_parts = self.breakdown.add_step(self._batch_begin, self._last_batch_end, logs)

        def on_epoch_end(self, epoch, logs=None):
            seconds = self._last_batch_end - self._epoch_start
            self.epoch_times_seconds.append(seconds)
            self.epoch_cpu_seconds.append(self._usage_end[0] - self._usage_start[0])
            self.epoch_page_faults.append(self._usage_end[1] - self._usage_start[1])
            self._epoch_start = None
            logs = {key: float(value) for key, value in self.breakdown.strip(logs).items()}
            self.history.append(dict(epoch=epoch + 1, seconds=seconds, **logs))

        def state(self):
            """The epochs timed so far, for a checkpoint."""
            return {key: list(getattr(self, key)) for key in STATE_KEYS} | {"first_batch_time": self.first_batch_time}

        def restore(self, state, same_run):
            """Put back the epochs of a checkpoint before training resumes, so that the record
            of a restarted run still holds every epoch. `same_run`: a restart inside this run,
            whose start-up (the first batch) was the first attempt's."""
            for key in STATE_KEYS:
                getattr(self, key)[:0] = state.get(key, [])
            if same_run:
                self.first_batch_time = state["first_batch_time"]

    return EpochTimer()


def _usage():
    """(CPU seconds of this process, its minor page faults so far)."""
    return time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
