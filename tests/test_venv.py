"""The .venv of the scripts (scripts/lib/venv.sh `ensure_venv`), with a fake python and pip
(tests/fakes/fake-python.sh): nothing is installed. A first install shows pip's progress
condensed, a line per package and a line while pip is silent; an existing .venv is updated
without being called new; a failed install shows pip's last lines and what to do."""

import re

import pytest

from conftest import REPO_ROOT, run

FAKE_PYTHON = REPO_ROOT / "tests" / "fakes" / "fake-python.sh"
WHEEL = "tensorflow-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl"
# What pip prints for a first install, shortened, with the waits of a slow install.
FIRST_INSTALL = f"""Collecting tensorflow==2.21.0 (from -r requirements.txt (line 3))
  Downloading {WHEEL} (620.5 MB)
Collecting keras==3.12.0 (from tensorflow==2.21.0)
  Downloading https://pypi-mirror.example-host.org/packages/keras-3.12.0-py3-none-any.whl (12.4 MB)
Collecting six>=1.12.0 (from tensorflow==2.21.0)
  Downloading six-1.17.0-py2.py3-none-any.whl (11 kB)
  Using cached numpy-2.1.3-cp311-cp311-manylinux_2_17_x86_64.whl (16.3 MB)
Requirement already satisfied: pip in ./.venv/lib/python3.11/site-packages
Installing collected packages: six, numpy, keras, tensorflow
install six-1.17.0
sleep 3
install numpy-2.1.3
install keras-3.12.0
install tensorflow-2.21.0
Successfully installed keras-3.12.0 numpy-2.1.3 six-1.17.0 tensorflow-2.21.0
"""


@pytest.fixture
def world(tmp_path):
    """A repository root with the two requirements files, and the fake's log and script."""
    for name in ("requirements.txt", "requirements-dev.txt"):
        (tmp_path / name).write_text((REPO_ROOT / name).read_text())
    (tmp_path / "pip-script").write_text(FIRST_INSTALL)
    return tmp_path


def ensure_venv(world, requirements="requirements-dev.txt", **env):
    script = (f"set -o errexit -o nounset -o pipefail && source scripts/lib/common.sh && source scripts/lib/venv.sh && REPO_ROOT='{world}' && "
              f"ensure_venv {requirements}")
    return run(["bash", "-c", script], env={"PYTHON": str(FAKE_PYTHON), "FAKE_LOG": str(world / "calls"),
                                            "FAKE_PIP_SCRIPT": str(world / "pip-script"),
                                            "PIP_PROGRESS_SECONDS": "1", **env}, timeout=60)


def pip_lines(output):
    """The progress lines, without the script's prefix and the minutes:seconds."""
    return [re.sub(r"^\[[\w.-]+\] pip \d+:\d\d ", "", line) for line in output.splitlines() if "] pip " in line]


def test_a_first_install_shows_a_line_per_package_the_big_downloads_and_how_far_the_silent_install_is(world):
    finished = ensure_venv(world)
    assert finished.returncode == 0, finished.stderr
    assert "Installing requirements-dev.txt into the new .venv: minutes and gigabytes the first time" in finished.stdout
    lines = pip_lines(finished.stdout)
    assert lines[:6] == ["collecting tensorflow==2.21.0 (from -r requirements.txt (line 3))",
                         "downloading tensorflow (620.5 MB)",
                         "collecting keras==3.12.0 (from tensorflow==2.21.0)",
                         "downloading keras (12.4 MB)",
                         "collecting six>=1.12.0 (from tensorflow==2.21.0)",
                         "installing 4 packages into .venv (the longest step: a line every 1 s)"]
    # pip is silent while it installs: the lines say how many packages are in place so far.
    # While the fake pip sleeps, six alone is in place; on a busy machine a tick may also land
    # after a later package, before pip exits.
    silent = lines[6:-1]
    progress = [f"installing: {count} of 4 packages in place (the latest: {package})" for count, package in
                enumerate(("six-1.17.0", "numpy-2.1.3", "keras-3.12.0", "tensorflow-2.21.0"), start=1)]
    assert silent and silent[0] == progress[0]  # during the 3 s of silence
    assert set(silent) <= set(progress) and silent == sorted(silent)  # the count never goes back
    assert lines[-1] == "done"
    # pip's whole output is kept; the small downloads and the cached files are left out on screen.
    assert (world / ".venv" / "pip-install.log").read_text() == "".join(
        line + "\n" for line in FIRST_INSTALL.splitlines() if not line.startswith(("install ", "sleep ")))
    assert "six-1.17.0" not in " ".join(lines[:6]) and "numpy" not in " ".join(lines[:6])
    assert (world / ".venv" / ".installed-requirements-dev.sha256").exists()
    assert not (world / ".venv" / ".pip-install-started").exists()


def test_an_installed_venv_is_left_alone_and_an_existing_one_is_updated_without_being_called_new(world):
    assert ensure_venv(world, "requirements.txt").returncode == 0
    (world / "calls").write_text("")
    again = ensure_venv(world, "requirements.txt")
    assert again.returncode == 0 and again.stdout == "" and (world / "calls").read_text() == ""
    # The test tools are not in yet: pip runs, into the .venv that exists, which is not new.
    (world / "pip-script").write_text("Collecting pytest==9.1.1\nInstalling collected packages: pytest\n"
                                      "install pytest-9.1.1\nSuccessfully installed pytest-9.1.1\n")
    updated = ensure_venv(world, "requirements-dev.txt")
    assert updated.returncode == 0, updated.stderr
    assert ("Updating the existing .venv with requirements-dev.txt (a requirements file changed, or these "
            "packages were never installed into it): pip installs only what is missing.") in updated.stdout
    assert "first time" not in updated.stdout and "Creating" not in updated.stdout and "new .venv" not in updated.stdout
    assert pip_lines(updated.stdout) == ["collecting pytest==9.1.1",
                                         "installing 1 packages into .venv (the longest step: a line every 1 s)",
                                         "done"]
    assert "python -m venv" not in (world / "calls").read_text()


def test_a_failed_install_shows_the_error_and_pips_last_lines_and_says_what_to_do(world):
    (world / "pip-script").write_text("Collecting tensorflow==9.9.9\n"
                                      "ERROR: Could not find a version that satisfies the requirement tensorflow==9.9.9\n")
    finished = ensure_venv(world, FAKE_PIP_EXIT="1")
    assert finished.returncode == 1
    assert "ERROR: Could not find a version that satisfies the requirement tensorflow==9.9.9" in finished.stdout
    assert finished.stderr.count("Could not find a version") == 1  # pip's last lines, on stderr
    assert ("ERROR: pip could not install requirements-dev.txt (its last lines are above; all of them in "
            ".venv/pip-install.log). Check your network or proxy, then run this script again.") in finished.stderr
    assert not (world / ".venv" / ".installed-requirements-dev.sha256").exists()
    # The next run installs again, and says that the first install did not finish.
    (world / "pip-script").write_text(FIRST_INSTALL.replace("sleep 3\n", ""))
    again = ensure_venv(world)
    assert again.returncode == 0, again.stderr
    assert "Installing requirements-dev.txt into .venv, whose first install did not finish" in again.stdout
