"""The measurement switches: environment variables that change what the harness measures,
never what the lesson trains. They are documented here, all in one place, and read here but
for DEMO_ALLOCATOR (below); the driver passes every DEMO_* variable it has on to the Ray
workers (lesson/workarounds.py, ray_worker_settings).

- DEMO_STEP_TIMING=1 (default) times each training step in parts (step_timing.py); 0 keeps
  Keras' stock step, to measure what the timing costs (the levers run's stock-step row).
- DEMO_ALLREDUCE_DTYPE=float32 (default), bfloat16 or float16: the gradients' type in the
  all-reduce of the timed step (the levers run's compression rows; docs/PERFORMANCE.md).
- DEMO_LIVE_METRICS=1 (default) sets the Prometheus gauges in Ray workers (live_metrics.py);
  0 turns them off, to measure what they cost (docs/MONITORING.md).
- DEMO_ALLOCATOR=tuned (default) or system: how TensorFlow gets memory for tensors, the same
  for both runs. It is a version workaround, so lesson/workarounds.py reads it (section 2).
- RAY_DEMO_CLUSTER_DIR (not a switch; set by scripts/local-cluster.sh on its own processes):
  the marker by which `local-cluster.sh stop` finds exactly this cluster's processes.
"""

import os

ALLREDUCE_DTYPES = ("float32", "bfloat16", "float16")


def _choice(name, default, allowed):
    value = os.environ.get(name, default)
    if value not in allowed:
        expected = "0 or 1" if allowed == ("0", "1") else "one of " + ", ".join(allowed)
        raise ValueError(f"{name} must be {expected}, got '{value}'.")
    return value


def step_timing():
    """False when DEMO_STEP_TIMING=0 asks for Keras' stock training step."""
    return _choice("DEMO_STEP_TIMING", "1", ("0", "1")) == "1"


def allreduce_dtype():
    """The gradients' type in the all-reduce (DEMO_ALLREDUCE_DTYPE)."""
    return _choice("DEMO_ALLREDUCE_DTYPE", "float32", ALLREDUCE_DTYPES)


def live_metrics():
    """False when DEMO_LIVE_METRICS=0 turns the workers' gauges off."""
    return _choice("DEMO_LIVE_METRICS", "1", ("0", "1")) == "1"


def check_all():
    """Fail before any cluster work when a switch has a bad value."""
    step_timing()
    allreduce_dtype()
    live_metrics()
