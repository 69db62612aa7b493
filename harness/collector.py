"""How each Ray worker's record reaches the driver.

Under Ray Train V2 (Ray 2.60) the training function's return value is discarded, and
metrics reported without a checkpoint never reach `Result.metrics`. So every worker sends
its record to a small actor, the ResultsCollector (0 CPUs, on the head node), and the
driver reads it after `trainer.fit()`. This works when the workers are on other machines
with no shared filesystem, as on Kubernetes. What a record holds is built by
harness/instruments.py (its proof of sharding and sync: harness/proof.py).
"""

from harness.attempts import AttemptTracker


def start_collector(ray):
    """The ResultsCollector actor, on the head node: a worker node may be killed
    (scripts/experiments/chaos.sh), the head may not."""

    @ray.remote(num_cpus=0)
    class ResultsCollector(AttemptTracker):
        """Holds what the workers send; lives in the cluster, read by the driver."""

        def __init__(self):
            super().__init__()  # counts worker group attempts (restarts): attempts.py
            self.records = []

        def add(self, record):
            self.records.append(record)

        def get_all(self):
            return list(self.records)

    return ResultsCollector.options(resources={"node:__internal_head__": 0.001}).remote()


def send_record(collector, record):
    """Send this worker's record home, and wait until it has arrived."""
    import ray

    ray.get(collector.add.remote(record))
