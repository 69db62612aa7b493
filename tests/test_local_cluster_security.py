"""Nobody else on the network can use the local cluster: a test from another host.

Two network namespaces made here, each with its own address, joined by a veth pair: the
"laptop" runs `./scripts/local-cluster.sh start`, with a default route through the other
side like a laptop on a shared network, and the "neighbour" tries every port the cluster
listens on, as the laptop's `ss` lists them (not a list of Ray's ports). Traffic goes only
to loopback and to the addresses of these two namespaces. On the laptop itself, the
dashboard asks for the cluster's token, the GCS refuses a driver without it, and the token
file is readable by its owner alone. Last, `local-cluster.sh kill-node` takes the laptop's
worker node away as a crash would.
"""

import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import PYTHON, REPO_ROOT, cluster_processes, run

NAME = f"rdemo{os.getpid()}"
LAPTOP, NEIGHBOUR = f"{NAME}-laptop", f"{NAME}-other"
LAPTOP_ADDRESS, NEIGHBOUR_ADDRESS = "10.213.77.1", "10.213.77.2"
RAY_PORT, DASHBOARD_PORT = 6398, 8278
CLUSTER_DIR = f"/tmp/ray-demo-netns-{RAY_PORT}"


def sh(*command, check=True):
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=60)


def namespaces_work():
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    made = sh("ip", "netns", "add", f"{NAME}-probe", check=False).returncode == 0
    if made:
        sh("ip", "netns", "delete", f"{NAME}-probe", check=False)
    return made


# One pytest-xdist worker runs this file: its cluster's folder is fixed (CLUSTER_DIR).
pytestmark = [pytest.mark.skipif(not namespaces_work(), reason="needs root and network namespaces (ip netns)"),
              pytest.mark.xdist_group("laptop")]


@pytest.fixture(scope="module")
def laptop():
    """The laptop's namespace running the local cluster; yields its listening sockets."""
    sh("ip", "netns", "add", LAPTOP)
    sh("ip", "netns", "add", NEIGHBOUR)
    try:
        sh("ip", "link", "add", f"{NAME}a", "netns", LAPTOP, "type", "veth", "peer", "name", f"{NAME}b",
           "netns", NEIGHBOUR)
        for namespace, device, address in ((LAPTOP, f"{NAME}a", LAPTOP_ADDRESS),
                                           (NEIGHBOUR, f"{NAME}b", NEIGHBOUR_ADDRESS)):
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
            sh("ip", "-n", namespace, "addr", "add", f"{address}/30", "dev", device)
            sh("ip", "-n", namespace, "link", "set", device, "up")
        # A laptop on a shared network: its routable address is the one Ray would pick.
        sh("ip", "-n", LAPTOP, "route", "add", "default", "via", NEIGHBOUR_ADDRESS)
        settings = {"RAY_PORT": str(RAY_PORT), "DASHBOARD_PORT": str(DASHBOARD_PORT), "CLUSTER_DIR": CLUSTER_DIR,
                    "NUM_WORKERS": "1", "CPUS_PER_WORKER": "1", "PIN_CPUS": "0"}
        script = str(REPO_ROOT / "scripts" / "local-cluster.sh")
        started = run(["ip", "netns", "exec", LAPTOP, script, "start"], env=settings, timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
        listening = sh("ip", "netns", "exec", LAPTOP, "ss", "-Hltnp").stdout.splitlines()
        yield {"listening": listening, "settings": settings}
        run(["ip", "netns", "exec", LAPTOP, script, "stop"], env=settings, timeout=60)
    finally:
        sh("ip", "netns", "delete", LAPTOP, check=False)
        sh("ip", "netns", "delete", NEIGHBOUR, check=False)


def listeners(lines):
    """(address, port, process) of every listening TCP socket in `ss -Hltnp` lines."""
    found = []
    for line in lines:
        fields = line.split()
        address, _, port = fields[3].rpartition(":")
        found.append((address.strip("[]"), int(port), fields[-1] if "users:" in fields[-1] else ""))
    return found


def test_every_port_of_the_local_cluster_is_on_loopback_and_unreachable_from_another_host(laptop):
    found = listeners(laptop["listening"])
    ports = sorted({port for _, port, _ in found})
    assert RAY_PORT in ports and DASHBOARD_PORT in ports and len(ports) >= 8, laptop["listening"]
    exposed = [entry for entry in found if entry[0] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert not exposed, f"listening beyond loopback: {exposed}"
    # The Ray Client server is not started: nothing of the demo uses it.
    assert 10001 not in ports
    # From the neighbour, each port: a TCP connect to the laptop's address, 2 s at most each.
    probe = ("import json, socket, sys\n"
             "results = {}\n"
             "for port in json.loads(sys.argv[2]):\n"
             "    try:\n"
             "        socket.create_connection((sys.argv[1], port), timeout=2).close()\n"
             "        results[port] = 'open'\n"
             "    except OSError as error:\n"
             "        results[port] = type(error).__name__\n"
             "print(json.dumps(results))\n")
    answer = sh("ip", "netns", "exec", NEIGHBOUR, PYTHON, "-c", probe, LAPTOP_ADDRESS, json.dumps(ports))
    results = json.loads(answer.stdout)
    assert len(results) == len(ports)
    assert all(result == "ConnectionRefusedError" for result in results.values()), results
    # The probe itself reaches the laptop: a port opened there for the purpose answers.
    with subprocess.Popen(["ip", "netns", "exec", LAPTOP, PYTHON, "-c",
                           "import socket, time\n"
                           f"s = socket.create_server(('{LAPTOP_ADDRESS}', 9901)); time.sleep(20)"]) as server:
        try:
            for _ in range(40):
                reached = json.loads(sh("ip", "netns", "exec", NEIGHBOUR, PYTHON, "-c", probe, LAPTOP_ADDRESS,
                                        "[9901]").stdout)
                if reached["9901"] == "open":
                    break
            assert reached == {"9901": "open"}
        finally:
            server.kill()


# An HTTP request on the laptop: prints the status code.
HTTP = ("import json, sys, urllib.error, urllib.request\n"
        "method, url, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])\n"
        "body = b'{\"entrypoint\": \"echo submitted\"}' if method == 'POST' else None\n"
        "request = urllib.request.Request(url, data=body, headers=headers, method=method)\n"
        "try:\n"
        "    print(urllib.request.urlopen(request, timeout=10).status)\n"
        "except urllib.error.HTTPError as error:\n"
        "    print(error.code)\n")


def on_laptop_http(method, url, headers):
    return sh("ip", "netns", "exec", LAPTOP, PYTHON, "-c", HTTP, method, url, json.dumps(headers)).stdout.strip()


def test_the_dashboard_and_the_gcs_refuse_a_client_without_the_cluster_token(laptop):
    token_path = os.path.join(CLUSTER_DIR, "auth_token")
    assert oct(os.stat(token_path).st_mode & 0o777) == "0o600"
    token = open(token_path, encoding="utf-8").read().strip()
    jobs = f"http://127.0.0.1:{DASHBOARD_PORT}/api/jobs/"
    # A job submission through the dashboard's REST API, on the laptop itself.
    assert on_laptop_http("POST", jobs, {}) == "401"
    assert on_laptop_http("POST", jobs, {"Authorization": "Bearer " + "0" * len(token)}) == "403"
    assert on_laptop_http("GET", jobs, {"Authorization": f"Bearer {token}"}) == "200"
    # A driver without the token: the GCS refuses it.
    driver = run(["ip", "netns", "exec", LAPTOP, PYTHON, "-c", f"import ray; ray.init(address='127.0.0.1:{RAY_PORT}')"],
                 env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/nonexistent/token",
                      "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, timeout=120)
    assert driver.returncode != 0
    assert "token" in (driver.stdout + driver.stderr).lower(), (driver.stdout + driver.stderr)[-2000:]


def test_kill_node_kills_every_process_of_a_worker_node_at_once_and_leaves_the_head_running(laptop):
    """Last in this file: it takes the laptop cluster's only worker node away, as a crash would
    (what the chaos demo does to a node on the local target)."""
    before = cluster_processes(CLUSTER_DIR)
    script = str(REPO_ROOT / "scripts" / "local-cluster.sh")
    killed = run(["ip", "netns", "exec", LAPTOP, script, "kill-node", "1"], env=laptop["settings"], timeout=60)
    assert killed.returncode == 0 and "Killing worker node ray-worker-1 (SIGKILL to" in killed.stdout + killed.stderr
    time.sleep(1)
    after = cluster_processes(CLUSTER_DIR)
    assert [line for line in before if "/ray-worker-1/" in line]
    assert not [line for line in after if "/ray-worker-1/" in line]
    # Every process of the head is still there (by PID: ps's state column changes as they run).
    head_before = {line.split()[0] for line in before if "/ray-head/" in line}
    assert head_before and head_before <= {line.split()[0] for line in after if "/ray-head/" in line}
