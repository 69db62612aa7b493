"""What a run records while it trains, the same way in the baseline and in every Ray worker:
the time of each epoch's training steps, the steps run, the CPU time and page faults over
the same span, the first batch, the per-epoch history, the input shard read, and a
progress line per epoch.

An epoch's time runs from its first batch to its last training batch, so that per-epoch
validation is not counted as training time in either run. A process that gets its whole
core shows CPU seconds close to the epoch's seconds; a well-behaved allocator a few
thousand page faults per step (workarounds.tune_memory_allocation).
"""

import resource
import sys
import time

from harness.live_metrics import LiveMetrics
from harness.step_timing import StepBreakdown


def log(message):
    """A progress line, flushed at once so that it shows through Ray's log forwarding.

    Written to stdout directly: Ray Train V2 turns print() on workers into a log record,
    which the root logger's several handlers would then print more than once.
    """
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stdout.flush()


# The recorder's lists, saved in a checkpoint and restored after a restart.
STATE_KEYS = ("epoch_times_seconds", "epoch_cpu_seconds", "epoch_page_faults", "steps_per_epoch", "history",
              "epoch_step_parts")


def epoch_recorder(tf, label, samples_per_epoch, workers=1):
    """A Keras callback that records each epoch and prints a progress line for it.

    `samples_per_epoch`: the images of one epoch, all `workers` together; the progress line's
    images per second are theirs together, the figure to hold against the baseline's."""
    together = f" ({workers} workers together)" if workers > 1 else ""

    class EpochRecorder(tf.keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_times_seconds = []
            self.epoch_cpu_seconds = []
            self.epoch_page_faults = []
            self.steps_per_epoch = []
            self.history = []
            self.first_batch_time = None
            self.fit_seconds = None
            self.input_pipelines = []
            # Each epoch's steps by part: input, compute, all-reduce, optimizer (step_timing.py).
            self.breakdown = StepBreakdown()
            self.epoch_step_parts = self.breakdown.epochs
            # Gauges for Prometheus in a Ray Train worker; does nothing elsewhere (live_metrics.py).
            self.live = LiveMetrics(samples_per_epoch)
            self._fit_start = None
            self._batch_begin = None
            self._epoch_start = None
            self._usage_start = None
            self._usage_end = None
            self._last_batch_end = None

        def note_shard(self, input_context):
            """Note the input pipeline this process built (pipeline k of N): proof of sharding."""
            shard = [input_context.input_pipeline_id, input_context.num_input_pipelines]
            if shard not in self.input_pipelines:
                self.input_pipelines.append(shard)

        def on_train_begin(self, logs=None):
            self._fit_start = time.time()
            self.live.begin(self.params.get("steps"))

        def on_train_end(self, logs=None):
            self.fit_seconds = time.time() - self._fit_start
            if self.live.enabled:
                log(f"{label} {self.live.summary(self.fit_seconds)}")

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
            parts = self.breakdown.add_step(self._batch_begin, self._last_batch_end, logs)
            self.live.step(self._last_batch_end - self._batch_begin, parts)

        def on_epoch_end(self, epoch, logs=None):
            seconds = self._last_batch_end - self._epoch_start
            self.epoch_times_seconds.append(seconds)
            self.epoch_cpu_seconds.append(self._usage_end[0] - self._usage_start[0])
            self.epoch_page_faults.append(self._usage_end[1] - self._usage_start[1])
            self._epoch_start = None
            logs = {key: float(value) for key, value in self.breakdown.strip(logs).items()}
            self.history.append(dict(epoch=epoch + 1, seconds=seconds, **logs))
            self.live.epoch(epoch + 1, logs)
            summary = " ".join(f"{key}={value:.4f}" for key, value in logs.items())
            rate = samples_per_epoch / seconds
            log(f"{label} epoch {epoch + 1}: {seconds:.1f}s, {rate:.1f} img/s{together}, {summary}")

        def state(self):
            """The epochs recorded so far, for a checkpoint."""
            return {key: list(getattr(self, key)) for key in STATE_KEYS} | {"first_batch_time": self.first_batch_time}

        def restore(self, state, same_run):
            """Put back the epochs of a checkpoint before training resumes, so that the record
            of a restarted run still holds every epoch. `same_run`: a restart inside this run,
            whose start-up (the first batch) was the first attempt's."""
            for key in STATE_KEYS:
                getattr(self, key)[:0] = state.get(key, [])
            if same_run:
                self.first_batch_time = state["first_batch_time"]

    return EpochRecorder()


def _usage():
    """(CPU seconds of this process, its minor page faults so far)."""
    return time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
