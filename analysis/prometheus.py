"""Prometheus asked from Python: its HTTP API, and a throwaway server over a run's stored data.

monitoring_report.py asks the run's own Prometheus while it runs; when that one does not
answer any more, `reopened_prometheus` serves the run's data folder on a free port, read for
the report only. tests/test_monitoring.py asks a smoke run's Prometheus the same way.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request


class MonitoringError(Exception):
    """Prometheus could not be asked (not running, not installed, or an error answer)."""


def answers(url, timeout=3):
    """True when a Prometheus answers a query at url."""
    try:
        query(url, "vector(1)", timeout=timeout)
        return True
    except MonitoringError:
        return False


def _get(url, path, params, timeout):
    address = f"{url}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:  # Prometheus says why in its JSON body
        try:
            body = json.load(error)
        except ValueError:
            raise MonitoringError(f"{address}: HTTP {error.code}") from error
    except (OSError, ValueError) as error:
        raise MonitoringError(f"{address}: {error}") from error
    if body.get("status") != "success":
        raise MonitoringError(f"{address}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def query(url, expression, at=None, timeout=10):
    """An instant query: [(labels, value)]."""
    params = {"query": expression} | ({"time": at} if at is not None else {})
    return [(item["metric"], float(item["value"][1])) for item in _get(url, "/api/v1/query", params, timeout)["result"]]


def query_range(url, expression, start, end, step):
    """A range query: [(labels, [(unix time, value), ...])]."""
    data = _get(url, "/api/v1/query_range", {"query": expression, "start": start, "end": end, "step": step}, 30)
    return [(item["metric"], [(float(moment), float(value)) for moment, value in item["values"]])
            for item in data["result"]]


def free_port():
    """A TCP port of 127.0.0.1 that nothing listens on (free when asked)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def reopened_prometheus(data_dir, timeout=60):
    """A throwaway Prometheus on a free port over a run's data folder; yields its URL.

    It scrapes nothing, and its long retention keeps Prometheus from deleting old runs' data.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        raise MonitoringError("'prometheus' is not installed or not on PATH, so the run's data cannot be "
                              "re-opened (Debian/Ubuntu: 'sudo apt install prometheus'; macOS: "
                              "'brew install prometheus').")
    if not os.path.isdir(data_dir):
        raise MonitoringError(f"{data_dir} holds no Prometheus data.")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="prometheus-reopen-") as scratch:
        config = os.path.join(scratch, "prometheus.yml")
        with open(config, "w", encoding="utf-8") as out:
            out.write("# No scrape targets: this Prometheus only serves stored data.\nglobal: {}\n")
        with open(os.path.join(scratch, "prometheus.log"), "w", encoding="utf-8") as log:
            process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
                                        "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
                                       stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + timeout
            while not answers(url, timeout=1):
                if process.poll() is not None or time.time() > deadline:
                    with open(os.path.join(scratch, "prometheus.log"), encoding="utf-8") as log:
                        tail = log.read()[-1500:]
                    raise MonitoringError(f"A Prometheus over {data_dir} did not start:\n{tail}")
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

