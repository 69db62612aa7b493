"""The training recipe's defaults, in the one place they live, and the checks of the flags.

Both entry points take their defaults from here, and so do the scripts:
`python3 -m lesson.recipe [--smoke-test | --full]` prints them as shell assignments
(`EPOCHS=3`, ...), which `scripts/lib.sh` reads. Change a default here and every entry
point, script and `--help` follows.

The default recipe runs the quick start (`./scripts/run-benchmark.sh`: the baseline and a
2-worker Ray run) on a 2-core laptop in about ten minutes, with a dataset that needs no
download. `--full` switches to the whole CIFAR-10 for 10 epochs.
"""

import argparse
import sys

DATASETS = ("synthetic", "cifar10")
RECIPE_KEYS = ("dataset", "train_size", "test_size", "epochs", "batch_size")
RECIPES = {
    # Offline, learnable and CIFAR-shaped, so the quick start needs no network; small enough
    # for minutes on one core per worker, large enough that accuracy means something.
    # batch_size is per worker: the Ray run's global batch is this times the workers.
    "default": dict(dataset="synthetic", train_size=4096, test_size=1024, epochs=3, batch_size=64),
    # --smoke-test: a run that only proves every path works, in seconds of training.
    "smoke": dict(dataset="synthetic", train_size=256, test_size=128, epochs=1, batch_size=32),
    # --full: the whole CIFAR-10 (50,000 train / 10,000 test images) for 10 epochs.
    "full": dict(dataset="cifar10", train_size=50_000, test_size=10_000, epochs=10, batch_size=64),
}
DEFAULT_BATCH_SIZE = RECIPES["default"]["batch_size"]
# One CPU per worker, and the same one CPU for the baseline: equal budgets per process.
DEFAULT_CPUS = 1
DEFAULT_NUM_WORKERS = 2
# Worker group restarts Ray Train may make after a failure (FailureConfig(max_failures)).
DEFAULT_MAX_FAILURES = 2
# Adam at 1e-3 is stable for this CNN with batch norm at global batches of 64-256.
DEFAULT_LEARNING_RATE = 1e-3
LR_SCALINGS = ("none", "linear")
DEFAULT_SEED = 42
DEFAULT_RESULTS_DIR = "results"


def _checked_number(text, convert, is_valid, expectation):
    """Convert an argparse value; say what was expected and what was given when it is not."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expectation}, got '{text}'") from None
    if not is_valid(value):
        raise argparse.ArgumentTypeError(f"expected {expectation}, got {value}")
    return value


def positive_int(text):
    """argparse type: a whole number >= 1."""
    return _checked_number(text, int, lambda value: value >= 1, "a whole number of at least 1")


def non_negative_int(text):
    """argparse type: a whole number >= 0."""
    return _checked_number(text, int, lambda value: value >= 0, "a whole number (0 or more)")


def positive_float(text):
    """argparse type: a number > 0."""
    return _checked_number(text, float, lambda value: value > 0, "a number greater than 0")


def add_recipe_arguments(parser):
    """The flags of the recipe, shared by the baseline and the Ray entry point."""
    default = RECIPES["default"]
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help=f"synthetic (offline, learnable) or cifar10 (downloaded once, checksum verified); "
                             f"default {default['dataset']}, or cifar10 with --full")
    parser.add_argument("--data-dir", default=None,
                        help="cache for CIFAR-10, or a folder that already holds cifar-10-batches-py "
                             "(default: .data/ in the repository)")
    parser.add_argument("--train-size", type=positive_int, default=None,
                        help=f"use the first N training examples (default {default['train_size']})")
    parser.add_argument("--test-size", type=positive_int, default=None,
                        help=f"use the first N test examples (default {default['test_size']})")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help=f"passes over the training set (default {default['epochs']})")
    parser.add_argument("--learning-rate", type=positive_float, default=DEFAULT_LEARNING_RATE,
                        help=f"Adam learning rate (default {DEFAULT_LEARNING_RATE})")
    parser.add_argument("--lr-scaling", choices=LR_SCALINGS, default="none",
                        help="none (default), or linear: scale --learning-rate with the global batch "
                             "(it is the rate for a global batch of 128) after a warm-up epoch")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for data and weights")
    parser.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="where the results JSON goes")
    add_mode_arguments(parser)


def add_mode_arguments(parser):
    """--full and --smoke-test: which recipe the unset flags come from."""
    parser.add_argument("--full", action="store_true",
                        help=f"whole CIFAR-10 for {RECIPES['full']['epochs']} epochs (hours on a laptop)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="tiny data, one epoch: proves the path works in seconds")


def add_fault_tolerance_arguments(parser):
    """The Ray run's checkpoint and restart flags (lesson/fault_tolerance.py)."""
    parser.add_argument("--storage-path", default=None,
                        help="where Ray Train keeps run state and checkpoints; every node must reach it: "
                             "a folder, or s3://bucket/prefix with AWS_ENDPOINT_URL and the AWS keys set "
                             "(default: checkpoints/ in the repository with --checkpoint, else ~/ray_results)")
    parser.add_argument("--checkpoint", action="store_true",
                        help="save a checkpoint every epoch; a restarted worker group resumes from it")
    parser.add_argument("--max-failures", type=non_negative_int, default=DEFAULT_MAX_FAILURES,
                        help=f"worker group restarts Ray Train may make (default {DEFAULT_MAX_FAILURES})")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run (--run-name, or the latest unfinished one in "
                             "--storage-path) from its latest checkpoint; implies --checkpoint")
    parser.add_argument("--run-name", default=None,
                        help="Ray Train run name, the folder under --storage-path (default: generated)")


def recipe_mode(args):
    """'full', 'smoke' or 'default', from the flags."""
    if args.full and args.smoke_test:
        raise ValueError("--full and --smoke-test contradict each other: pick one.")
    return "full" if args.full else "smoke" if args.smoke_test else "default"


def resolve_sizes(args):
    """The recipe: the flags given, the rest from --full, --smoke-test or the defaults.

    Returns a dict with dataset, train_size, test_size, epochs and batch_size.
    """
    resolved = dict(RECIPES[recipe_mode(args)])
    for key in RECIPE_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            resolved[key] = value
    return resolved


def shell_defaults(mode):
    """The defaults of a mode as NAME=value lines, the names the scripts use."""
    recipe = RECIPES[mode]
    values = {"EPOCHS": recipe["epochs"], "BATCH_SIZE": recipe["batch_size"], "DATASET": recipe["dataset"],
              "TRAIN_SIZE": recipe["train_size"], "TEST_SIZE": recipe["test_size"],
              "NUM_WORKERS": DEFAULT_NUM_WORKERS, "CPUS_PER_WORKER": DEFAULT_CPUS,
              "MAX_FAILURES": DEFAULT_MAX_FAILURES}
    return "\n".join(f"{name}={value}" for name, value in values.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description="Print the training defaults as shell assignments "
                                                 "(read by scripts/lib.sh).")
    add_mode_arguments(parser)
    args = parser.parse_args(argv)
    try:
        print(shell_defaults(recipe_mode(args)))
    except ValueError as error:
        print(f"settings: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
