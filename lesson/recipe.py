"""The training recipe: one typed object, built and validated once, that both runs train with.

`Recipe` holds every setting of a comparison: the data, the epochs, the per-worker batch,
the workers and their CPUs, the optimizer's rate and the seed. Its defaults are written
once, here, and every entry point, script and `--help` reads them from here:
- the entry points build it from their flags (`add_arguments`, `from_args`);
- the scripts run `python3 -m lesson.recipe --from-env [--smoke-test | --full]`, which reads
  the same settings from the environment (EPOCHS=5, ...), validates them and prints the
  resolved recipe as shell assignments, with the flags that pass it on (RECIPE_FLAGS);
- `--describe` prints the lines of the scripts' `--help`.

The default recipe is the quick start (`./scripts/run-benchmark.sh`: the baseline and a
2-worker Ray run), on a dataset that needs no download; its measured run is in
docs/results/quickstart/. `--smoke-test` only proves every path; `--full` is the whole
CIFAR-10 for 10 epochs. Standard library only: the Minikube scripts read it without .venv.
"""

import argparse
import dataclasses
import os
import shlex
import sys

DATASETS = ("synthetic", "cifar10")
LR_SCALINGS = ("none", "linear")
MODES = ("default", "smoke", "full")


def setting(default, help, smoke=None, full=None, choices=None, minimum=1, maximum=None):
    """A recipe field: its default, what it means, what --smoke-test and --full change, and
    its bounds (a value past `maximum` is a typo, not a recipe)."""
    return dataclasses.field(default=default, metadata=dict(help=help, smoke=smoke, full=full, choices=choices,
                                                            minimum=minimum, maximum=maximum))


@dataclasses.dataclass(frozen=True)
class Recipe:
    # Offline, learnable and CIFAR-shaped, so that the quick start needs no network.
    dataset: str = setting("synthetic", "synthetic (offline, learnable) or cifar10 (downloaded once, "
                           "checksum verified)", full="cifar10", choices=DATASETS)
    # Unset, the local benchmark's default run sizes it to the machine (harness/calibrate.py).
    train_size: int = setting(4096, "training examples (unset: the local benchmark's default run chooses "
                              "at least this many by calibration)", smoke=256, full=50_000, maximum=10_000_000)
    test_size: int = setting(1024, "test examples", smoke=128, full=10_000, maximum=10_000_000)
    epochs: int = setting(3, "passes over the training set", smoke=1, full=10, maximum=10_000)
    # Per worker: the Ray run's global batch is this times the workers, and the baseline
    # trains at that global batch, so that both take the same optimizer steps.
    batch_size: int = setting(64, "examples per step on each Ray worker; the baseline takes this times "
                              "NUM_WORKERS, the same global batch", smoke=32, maximum=65_536)
    num_workers: int = setting(2, "Ray Train workers (local: also the number of worker nodes)", maximum=4096)
    # One CPU per worker, and the same one CPU for the baseline: equal budgets per process.
    cpus_per_worker: int = setting(1, "CPUs (and TensorFlow threads) per Ray worker; the baseline gets the same",
                                   maximum=4096)
    # Adam at 1e-3 is stable for this CNN with batch norm at global batches of 64-256.
    learning_rate: float = setting(1e-3, "Adam's learning rate", minimum=None, maximum=10.0)
    lr_scaling: str = setting("none", "none, or linear: scale LEARNING_RATE (the rate for a global batch of "
                              "128) with the global batch, after a warm-up epoch", choices=LR_SCALINGS)
    # NumPy and TensorFlow take seeds below 2**31 on every platform.
    seed: int = setting(42, "seed of the data, the weights and the shuffles", minimum=0, maximum=2**31 - 1)
    # Worker group restarts Ray Train may make after a failure (FailureConfig(max_failures)).
    max_failures: int = setting(2, "worker group restarts Ray Train may make before the run fails", minimum=0,
                                maximum=1000)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _checked(field, getattr(self, field.name)))
        if self.train_size < self.global_batch_size:
            raise ValueError(
                f"TRAIN_SIZE (--train-size) {self.train_size} is smaller than one global batch ({self.batch_size} per "
                f"worker x {self.num_workers} workers = {self.global_batch_size}). Raise TRAIN_SIZE or lower "
                "BATCH_SIZE.")

    @property
    def global_batch_size(self):
        """Examples per optimizer step, all workers together: what the baseline trains at."""
        return self.batch_size * self.num_workers

    @classmethod
    def resolve(cls, mode="default", **overrides):
        """The recipe of a mode (default, smoke or full) with the settings given; None means
        'not given'. Raises ValueError naming the setting when a value is not valid."""
        if mode not in MODES:
            raise ValueError(f"Unknown mode '{mode}': one of {', '.join(MODES)}.")
        values = {name: value for name, value in mode_defaults(mode).items()}
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)

    def as_dict(self):
        return dataclasses.asdict(self)

    def flags(self):
        """The command-line flags that give an entry point exactly this recipe."""
        return [part for name, value in self.as_dict().items() for part in (flag_name(name), str(value))]


def mode_defaults(mode):
    """Every field's default in a mode."""
    values = {}
    for field in dataclasses.fields(Recipe):
        changed = field.metadata.get(mode) if mode != "default" else None
        values[field.name] = field.default if changed is None else changed
    return values


def env_name(name):
    return name.upper()


def flag_name(name):
    return "--" + name.replace("_", "-")


def _checked(field, value):
    """The value converted to the field's type, or a ValueError that names the setting."""
    meta, name = field.metadata, f"{env_name(field.name)} ({flag_name(field.name)})"
    if meta["choices"]:
        if value not in meta["choices"]:
            raise ValueError(f"{name} must be one of {', '.join(meta['choices'])}; got '{value}'.")
        return value
    convert = float if field.type in (float, "float") else int
    number = None
    if isinstance(value, str):
        try:
            number = convert(value.strip())
        except ValueError:
            pass
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = convert(value) if convert is float or isinstance(value, int) else None
    if convert is float:
        if number is None or not number > 0 or number != number or number == float("inf"):
            raise ValueError(f"{name} must be a number greater than 0, got '{value}'.")
    else:
        minimum = meta["minimum"]
        if number is None or number < minimum:
            kind = "a whole number of at least 1" if minimum == 1 else "a whole number (0 or more)"
            raise ValueError(f"{name} must be {kind}, got '{value}'.")
    if meta["maximum"] is not None and number > meta["maximum"]:
        raise ValueError(f"{name} must be at most {meta['maximum']}, got '{value}': a typo? Use a smaller value.")
    return number


def positive_int(text):
    """argparse type for flags outside the recipe (a tool's --steps): a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value


def add_arguments(parser):
    """A flag for every recipe field (unset: the mode's default), and --smoke-test/--full."""
    for field in dataclasses.fields(Recipe):
        parser.add_argument(flag_name(field.name), default=None, metavar=env_name(field.name),
                            help=f"{field.metadata['help']} (default {describe_default(field)})")
    parser.add_argument("--full", action="store_true",
                        help=f"whole CIFAR-10 for {mode_defaults('full')['epochs']} epochs (hours on a laptop)")
    parser.add_argument("--smoke-test", action="store_true",
                        help="tiny data, one epoch: proves the path works in seconds")


def add_run_arguments(parser):
    """Where a run reads its data and writes its results: the same for both entry points."""
    parser.add_argument("--data-dir", default=None,
                        help="cache for CIFAR-10, or a folder that already holds cifar-10-batches-py "
                             "(default: .data/ in the repository)")
    parser.add_argument("--results-dir", default="results", help="where the results JSON goes (default results)")


def mode_of(args):
    """'full', 'smoke' or 'default', from --full and --smoke-test."""
    if args.full and args.smoke_test:
        raise ValueError("--full and --smoke-test contradict each other: pick one.")
    return "full" if args.full else "smoke" if args.smoke_test else "default"


def from_args(args):
    """The recipe of parsed flags (add_arguments): the flags given, the rest from the mode."""
    return Recipe.resolve(mode_of(args), **{field.name: getattr(args, field.name)
                                            for field in dataclasses.fields(Recipe)})


def from_environment(mode, environ=os.environ):
    """The recipe of the scripts' settings (EPOCHS=5, ...); an empty value counts as unset."""
    return Recipe.resolve(mode, **{field.name: environ.get(env_name(field.name)) or None
                                   for field in dataclasses.fields(Recipe)})


def describe_default(field):
    """'3' or '3; --smoke-test: 1, --full: 10'."""
    changes = [f"--smoke-test: {field.metadata['smoke']}" if field.metadata["smoke"] is not None else "",
               f"--full: {field.metadata['full']}" if field.metadata["full"] is not None else ""]
    changes = ", ".join(change for change in changes if change)
    return f"{field.default}" + (f"; {changes}" if changes else "")


def shell_assignments(recipe, with_flags=False):
    """The recipe as NAME=value lines (shell-quoted), and RECIPE_FLAGS=(...) when asked."""
    lines = [f"{env_name(name)}={shlex.quote(str(value))}" for name, value in recipe.as_dict().items()]
    if with_flags:
        lines.append("RECIPE_FLAGS=(" + " ".join(shlex.quote(part) for part in recipe.flags()) + ")")
    return "\n".join(lines)


def help_lines():
    """The recipe's lines in a script's --help: `  EPOCHS=3   what it is (--full: 10)`."""
    lines = []
    for field in dataclasses.fields(Recipe):
        assignment = f"{env_name(field.name)}={field.default}"
        changes = describe_default(field).partition("; ")[2]
        lines.append(f"  {assignment:<20} {field.metadata['help']}" + (f" ({changes})" if changes else ""))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Print the training recipe as shell assignments "
                                                 "(read by the scripts).")
    parser.add_argument("--from-env", action="store_true",
                        help="resolve and validate the settings of the environment (EPOCHS=5, ...), and "
                             "print RECIPE_FLAGS too")
    parser.add_argument("--describe", action="store_true",
                        help="print the recipe's lines of a script's --help (the defaults, and what "
                             "--smoke-test and --full change)")
    parser.add_argument("--full", action="store_true", help="the --full recipe")
    parser.add_argument("--smoke-test", action="store_true", help="the --smoke-test recipe")
    args = parser.parse_args(argv)
    try:
        mode = mode_of(args)
        if args.describe:
            print(help_lines())
        elif args.from_env:
            print(shell_assignments(from_environment(mode), with_flags=True))
        else:
            print(shell_assignments(Recipe.resolve(mode)))
    except ValueError as error:
        print(f"recipe: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
