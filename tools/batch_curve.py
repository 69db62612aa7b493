"""The batch curve: images/s against the per-worker batch for a plain Keras process, TensorFlow
alone and Ray Train, one after the other on the same machine (issue 17's question: on a fast
CPU a smaller batch costs more per image, and each Ray worker trains at 1/N of the global batch).

Each point is a short run of the real entry points (lesson.baseline_training with one worker,
harness.tensorflow_alone and lesson.ray_training with NUM_WORKERS), at least 8 steps an epoch,
2 epochs, the second epoch's images/s: 2 epochs are too short for the steady-state rule
(harness/steady_state.py) to show that a run settled, so the curve sets every run side by side
at the same epoch, and its points are not steady-state figures. It needs a running cluster for the Ray runs
(./scripts/local-cluster.sh start, then `eval "$(./scripts/local-cluster.sh env)"`):
    .venv/bin/python -m tools.batch_curve --batches 32 64 128 256 --out results/batch-curve
It writes batch_curve.json and prints the table; docs/results/batch_curve/ holds a committed run.
"""

import argparse
import json
import os
import subprocess
import sys

from harness import results, steady_state, tensorflow_alone
from lesson import recipe as recipes

RUNS = {"plain": "lesson.baseline_training", "tensorflow_alone": "harness.tensorflow_alone",
        "ray": "lesson.ray_training"}


def run_point(name, batch, workers, out, address):
    """Train one point; returns its results record."""
    module = RUNS[name]
    folder = os.path.join(out, f"{name}-batch{batch}")
    size = max(2048, 8 * batch * workers)
    count = 1 if name == "plain" else workers
    recipe = recipes.Recipe.resolve(train_size=size, test_size=512, epochs=2, batch_size=batch, num_workers=count)
    extra = ["--address", address] if name == "ray" else []
    subprocess.run([sys.executable, "-m", module, *recipe.flags(), "--results-dir", folder, *extra],
                   check=True, cwd=results.REPO_ROOT)
    file = {"plain": results.BASELINE_FILE, "tensorflow_alone": tensorflow_alone.results_file(count),
            "ray": results.ray_file(count)}[name]
    with open(os.path.join(folder, file), encoding="utf-8") as source:
        return json.load(source)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=recipes.positive_int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--num-workers", type=recipes.positive_int, default=2)
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="the Ray cluster (RAY_ADDRESS)")
    parser.add_argument("--out", required=True, help="a new folder for the runs and batch_curve.json")
    args = parser.parse_args(argv)
    if not args.address:
        parser.error("no Ray cluster: start one (./scripts/local-cluster.sh start), then "
                     "eval \"$(./scripts/local-cluster.sh env)\", or pass --address host:port")
    points = []
    for batch in args.batches:
        for name in RUNS:
            record = run_point(name, batch, args.num_workers, args.out, args.address)
            second = steady_state.images_per_second(record["samples_per_epoch"], record["epoch_times_seconds"], [2])
            points.append({"run": name, "batch_per_worker": batch, "images_per_second": second,
                           "workers": record["num_workers"], "host": record["host"]})
    results.write_json_atomic(os.path.join(args.out, "batch_curve.json"), {"points": points})
    print(f"{'batch per worker':>16} " + " ".join(f"{name:>18}" for name in RUNS))
    for batch in args.batches:
        row = {point["run"]: point["images_per_second"] for point in points if point["batch_per_worker"] == batch}
        print(f"{batch:>16} " + " ".join(f"{row[name]:>12.1f} img/s" for name in RUNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
