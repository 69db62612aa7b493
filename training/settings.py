"""Defaults shared by both entry points, and the validation of their flags.

The defaults are chosen so that the quick start (`./scripts/run-benchmark.sh`) runs
the baseline and a 2-worker Ray run on a 2-core laptop in about ten minutes, with a
dataset that needs no download. `--full` switches to the whole CIFAR-10 for 10 epochs.
"""

import argparse

# Offline, learnable and CIFAR-shaped: the quick start must work without a network.
DEFAULT_DATASET = "synthetic"
DATASETS = ("synthetic", "cifar10")
# Small enough for minutes on one core per worker, large enough that accuracy means something.
DEFAULT_TRAIN_SIZE = 4096
DEFAULT_TEST_SIZE = 1024
DEFAULT_EPOCHS = 3
# Per-worker batch. The Ray run's global batch is this times the number of workers.
DEFAULT_BATCH_SIZE = 64
# One CPU per worker, and the same one CPU for the baseline: equal budgets per process.
DEFAULT_CPUS = 1
DEFAULT_NUM_WORKERS = 2
# Adam at 1e-3 is stable for this CNN with batch norm at global batches of 64-256.
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_SEED = 42
DEFAULT_RESULTS_DIR = "results"

# --full: the whole CIFAR-10 (50,000 train / 10,000 test images) for 10 epochs.
FULL_TRAIN_SIZE = 50_000
FULL_TEST_SIZE = 10_000
FULL_EPOCHS = 10

# --smoke-test: a run that only proves every path works.
SMOKE_TRAIN_SIZE = 256
SMOKE_TEST_SIZE = 128
SMOKE_EPOCHS = 1
SMOKE_BATCH_SIZE = 32


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


def add_common_arguments(parser):
    """Flags shared by the baseline and the Ray entry point (same names, same meaning)."""
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help=f"synthetic (offline, learnable) or cifar10 (downloaded once, checksum verified); "
                             f"default {DEFAULT_DATASET}, or cifar10 with --full")
    parser.add_argument("--data-dir", default=None,
                        help="cache for CIFAR-10, or a folder that already holds cifar-10-batches-py "
                             "(default: .data/ in the repository)")
    parser.add_argument("--train-size", type=positive_int, default=None,
                        help=f"use the first N training examples (default {DEFAULT_TRAIN_SIZE})")
    parser.add_argument("--test-size", type=positive_int, default=None,
                        help=f"use the first N test examples (default {DEFAULT_TEST_SIZE})")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help=f"passes over the training set (default {DEFAULT_EPOCHS})")
    parser.add_argument("--learning-rate", type=positive_float, default=DEFAULT_LEARNING_RATE,
                        help=f"Adam learning rate (default {DEFAULT_LEARNING_RATE})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed for data and weights")
    parser.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR, help="where the results JSON goes")
    parser.add_argument("--full", action="store_true",
                        help=f"whole CIFAR-10 for {FULL_EPOCHS} epochs (needs the dataset; hours on a laptop)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="tiny data, one epoch: proves the path works in seconds")


def resolve_sizes(args, default_batch_size):
    """Fill in sizes left unset, from --full, --smoke-test or the defaults.

    Explicit flags always win. Returns a dict with dataset, train_size, test_size,
    epochs and batch_size.
    """
    if args.full and args.smoke_test:
        raise ValueError("--full and --smoke-test contradict each other: pick one.")
    if args.full:
        preset = dict(dataset="cifar10", train_size=FULL_TRAIN_SIZE, test_size=FULL_TEST_SIZE,
                      epochs=FULL_EPOCHS, batch_size=default_batch_size)
    elif args.smoke_test:
        preset = dict(dataset=DEFAULT_DATASET, train_size=SMOKE_TRAIN_SIZE, test_size=SMOKE_TEST_SIZE,
                      epochs=SMOKE_EPOCHS, batch_size=SMOKE_BATCH_SIZE)
    else:
        preset = dict(dataset=DEFAULT_DATASET, train_size=DEFAULT_TRAIN_SIZE, test_size=DEFAULT_TEST_SIZE,
                      epochs=DEFAULT_EPOCHS, batch_size=default_batch_size)
    resolved = dict(preset)
    for key in ("dataset", "train_size", "test_size", "epochs", "batch_size"):
        value = getattr(args, key, None)
        if value is not None:
            resolved[key] = value
    return resolved
