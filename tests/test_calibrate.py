"""harness/calibrate.py: the default run sized to the machine. The measurement runs for real
(a second of the baseline's step); the local target's use of it runs with a fake interpreter
that writes what the calibration would."""

import json
import os
import subprocess

import pytest

from conftest import REPO_ROOT, run
from harness import calibrate
from lesson.recipe import Recipe


@pytest.mark.parametrize("speed, expected", [
    (60.0, 4096),      # a slow core: 150 s would need fewer than the default 4,096 images
    (130.0, 6400),     # 130 x 150 / 3 = 6,500 -> whole batches of 128
    (184.0, 9088),     # a fast core
    (10_000.0, 32_768),  # capped
])
def test_the_size_is_whole_global_batches_for_about_the_target_time_within_bounds(speed, expected):
    assert calibrate.choose_train_size(speed, Recipe()) == expected


def test_calibration_measures_the_step_and_writes_a_size_the_recipe_accepts(tmp_path):
    finished = run([str(REPO_ROOT / ".venv" / "bin" / "python"), "-m", "harness.calibrate", "--num-workers", "2",
                    "--measure-seconds", "1", "--results-dir", str(tmp_path)], cwd=REPO_ROOT, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    record = json.loads((tmp_path / calibrate.CALIBRATION_FILE).read_text())
    assert finished.stdout.strip().splitlines()[-1] == f"TRAIN_SIZE={record['train_size']}"
    assert record["images_per_second"] > 0 and record["global_batch_size"] == 128
    assert record["train_size"] == calibrate.choose_train_size(record["images_per_second"], Recipe())
    Recipe(train_size=record["train_size"])  # valid
    assert "calibration: " in finished.stdout and "TRAIN_SIZE=<n> sets it yourself" in finished.stdout


def _calibrate_in_local_target(tmp_path, **env):
    """Source the local target and run calibrate_train_size with a fake .venv Python that
    writes calibration.json; print the resolved TRAIN_SIZE and RECIPE_FLAGS."""
    fake = tmp_path / "python"
    fake.write_text("#!/usr/bin/env bash\n"
                    "for arg; do [[ $prev == --results-dir ]] && dir=$arg; prev=$arg; done\n"
                    "echo \"$@\" >> \"$dir/calls\"\n"
                    "printf '{\\n  \"train_size\": 8192\\n}\\n' > \"$dir/calibration.json\"\n")
    fake.chmod(0o755)
    script = (f'source "{REPO_ROOT}/scripts/lib/common.sh"; source "$SCRIPTS_DIR/lib/recipe.sh"; '
              f'source "$SCRIPTS_DIR/lib/steps.sh"; source "$SCRIPTS_DIR/targets/local.sh"; '
              f'VENV_PYTHON="{fake}"; RESULTS_DIR="{tmp_path}"; PIN_CPUS=0; MODE=default; resolve_recipe default; '
              'calibrate_train_size; echo "TRAIN_SIZE=$TRAIN_SIZE FLAGS=${RECIPE_FLAGS[*]}"')
    return subprocess.run(["bash", "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_the_local_target_calibrates_the_default_recipe_and_resolves_it_again(tmp_path):
    finished = _calibrate_in_local_target(tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert "TRAIN_SIZE=8192 " in finished.stdout and "--train-size 8192" in finished.stdout
    assert "-m harness.calibrate" in (tmp_path / "calls").read_text()


def test_an_explicit_train_size_wins_over_the_calibration(tmp_path):
    finished = _calibrate_in_local_target(tmp_path, TRAIN_SIZE="2048")
    assert finished.returncode == 0, finished.stderr
    assert "TRAIN_SIZE=2048 " in finished.stdout and not (tmp_path / "calls").exists()

