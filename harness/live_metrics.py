"""Live training metrics from every Ray Train worker, for Prometheus and Grafana (MONITORING=1).

Each worker sets `ray.util.metrics` Gauges tagged with its `rank` and `node` (the first 8 hex
digits of its Ray node ID). Ray's metrics agent on the worker's node exports them with the
prefix `ray_`, beside Ray's own metrics (CPU per process, memory, object store), and the
Prometheus that scripts/lib/monitoring.sh starts scrapes every node. The names are fixed: the
Grafana dashboard (monitoring/grafana/data_parallel_training.json), the report's plots
(analysis/monitoring_report.py) and the Kubernetes monitors use them.

- demo_train_images_per_second: this worker's images per second over its training steps
  (the workers' sum is the cluster's throughput);
- demo_train_step_seconds: the mean step time, and its parts from harness/step_timing.py:
  demo_train_input_seconds, demo_train_compute_seconds, demo_train_allreduce_seconds (the
  gradient all-reduce: waiting for the other workers included),
  demo_train_allreduce_cpu_seconds (the CPU this process spent meanwhile: a worker that waits
  shows wall time without CPU) and demo_train_optimizer_seconds;
- demo_train_epoch, demo_train_loss and demo_train_accuracy, at the end of each epoch.

The epoch timer (harness/epoch_timing.py) hands over every step (harness/instruments.py); a step costs a few additions here,
and the gauges are set at most once a second (at the first step, then whenever a second has
passed, and at each epoch's end) with the means over the steps since. Each worker logs what
its live metrics cost at the end of training (docs/MONITORING.md has the measurement).

Outside a Ray Train worker (the baseline, tests, the driver) every method returns at once,
and Ray is not even imported. DEMO_LIVE_METRICS=0 (in the environment of the Ray nodes) turns
the metrics off, to measure what they cost.
"""

import sys
import time

from harness import switches

# Set at most this often, in seconds. Ray exports the last value to the node's metrics agent
# every RAY_metrics_report_interval_ms, which MONITORING=1 sets to Prometheus' scrape
# interval (5 s; 2 s for a smoke run).
UPDATE_INTERVAL_SECONDS = 1.0
TAG_KEYS = ("rank", "node")
# Gauge name -> (what it holds, the step part it averages; None: not a step part).
STEP_GAUGES = {
    "demo_train_step_seconds": ("Mean training step time of this worker, seconds", "step"),
    "demo_train_input_seconds": ("Mean time per step waiting for the input pipeline, seconds", "input"),
    "demo_train_compute_seconds": ("Mean forward and backward pass time per step, seconds", "compute"),
    "demo_train_allreduce_seconds": ("Mean gradient all-reduce time per step, waiting for the other "
                                     "workers included, seconds", "allreduce"),
    "demo_train_allreduce_cpu_seconds": ("Mean CPU time this worker spent during the all-reduce per step, "
                                         "seconds", "allreduce_cpu"),
    "demo_train_optimizer_seconds": ("Mean optimizer (Adam) time per step, seconds", "optimizer"),
}
EPOCH_GAUGES = {
    "demo_train_epoch": "Last completed epoch (1-based)",
    "demo_train_loss": "Training loss of the last completed epoch",
    "demo_train_accuracy": "Training accuracy of the last completed epoch",
}
# The step parts averaged, as step_timing.PARTS names them.
TIMED_PARTS = tuple(part for _, part in STEP_GAUGES.values() if part != "step")
THROUGHPUT_GAUGE = "demo_train_images_per_second"
METRIC_NAMES = (THROUGHPUT_GAUGE,) + tuple(STEP_GAUGES) + tuple(EPOCH_GAUGES)


def enabled_by_environment():
    """False when DEMO_LIVE_METRICS=0 (harness/switches.py) turns the gauges off."""
    return switches.live_metrics()


def train_worker_identity():
    """(rank, world size, node) of this Ray Train worker, or None outside one."""
    ray = sys.modules.get("ray")  # a process that never imported Ray is no Ray worker
    if ray is None or not ray.is_initialized():
        return None
    import ray.train

    try:
        context = ray.train.get_context()
        rank, world_size = context.get_world_rank(), context.get_world_size()
    except RuntimeError:  # Ray Train's context exists only inside a training function
        return None
    return rank, world_size, ray.get_runtime_context().get_node_id()[:8]


class LiveMetrics:
    """The gauges of one worker; see the module's doc. `samples_per_epoch`: the images of
    one epoch over all workers, as the recorder counts them."""

    def __init__(self, samples_per_epoch, identity=None):
        identity = identity or (train_worker_identity() if enabled_by_environment() else None)
        self.enabled = identity is not None
        self.updates = 0
        self.cost_seconds = 0.0  # time spent in this class, measured (perf_counter)
        if not self.enabled:
            return
        started = time.perf_counter()
        from ray.util.metrics import Gauge

        rank, world_size, node = identity
        self._worker_share = samples_per_epoch / world_size
        self._images_per_step = None
        tags = {"rank": str(rank), "node": node}
        self._gauges = {}
        for name, description in ([(THROUGHPUT_GAUGE, "Images per second of this worker over its training steps")]
                                  + [(name, text) for name, (text, _) in STEP_GAUGES.items()]
                                  + list(EPOCH_GAUGES.items())):
            gauge = Gauge(name, description=description, tag_keys=TAG_KEYS)
            gauge.set_default_tags(tags)
            self._gauges[name] = gauge
        self._next_update = 0.0  # the first step is published at once
        self._reset_window()
        self.cost_seconds += time.perf_counter() - started

    def _reset_window(self):
        self._steps = 0
        self._sums = dict.fromkeys(("step",) + TIMED_PARTS, 0.0)
        self._timed_steps = 0

    def begin(self, steps_per_epoch):
        """At the start of fit(): the steps of one epoch give this worker's images per step."""
        if self.enabled and steps_per_epoch:
            self._images_per_step = self._worker_share / steps_per_epoch

    def step(self, seconds, parts=None):
        """One training step of `seconds`, and its parts (step_timing.PARTS; None when the
        step was not timed in parts)."""
        if not self.enabled:
            return
        started = time.perf_counter()
        self._steps += 1
        self._sums["step"] += seconds
        if parts:
            self._timed_steps += 1
            for part in TIMED_PARTS:
                self._sums[part] += parts[part]
        if started >= self._next_update:
            self._publish(started)
        self.cost_seconds += time.perf_counter() - started

    def _publish(self, now):
        if self._steps:
            step_seconds = self._sums["step"]
            if self._images_per_step and step_seconds > 0:
                self._gauges[THROUGHPUT_GAUGE].set(self._images_per_step * self._steps / step_seconds)
            for name, (_, part) in STEP_GAUGES.items():
                if part == "step":
                    self._gauges[name].set(step_seconds / self._steps)
                elif self._timed_steps:
                    self._gauges[name].set(self._sums[part] / self._timed_steps)
            self.updates += 1
        self._reset_window()
        self._next_update = now + UPDATE_INTERVAL_SECONDS

    def epoch(self, epoch, logs):
        """The end of epoch `epoch` (1-based) with Keras' epoch logs: publish the steps not
        yet published, then the epoch, its loss and its accuracy."""
        if not self.enabled:
            return
        started = time.perf_counter()
        self._publish(started)
        self._gauges["demo_train_epoch"].set(epoch)
        for key in ("loss", "accuracy"):
            if key in (logs or {}):
                self._gauges[f"demo_train_{key}"].set(float(logs[key]))
        self.cost_seconds += time.perf_counter() - started

    def summary(self, fit_seconds):
        """A line saying what the live metrics cost, or None when they are off."""
        if not self.enabled:
            return None
        share = f", {100 * self.cost_seconds / fit_seconds:.3f}% of fit()" if fit_seconds else ""
        return (f"live metrics: {self.updates} updates of {len(self._gauges)} gauges, "
                f"{self.cost_seconds * 1000:.1f} ms in all{share}")
