"""A real Ray cluster on this machine for tests and benchmarks: a head and more nodes, each a ``ray start --block``.

`ray_cluster(nodes)` starts the head (``ray start --head --port P``) and ``nodes - 1`` more nodes (``ray start
--address 127.0.0.1:P``), each with one CPU unless told, a temp folder of its own under a short path (Ray's unix
sockets must fit in 107 bytes), unique ports, usage stats and the dashboard off, and token authentication on with a
token of its own (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN_PATH``; `Cluster.env` is what a client sets to connect).
Left to itself, Ray turns token authentication on for a head started while ``~/.ray/auth_token`` exists (a local
``ray.init()`` writes one) but not for the nodes joining it, which the head then refuses. The workers import the
harness of this checkout (``PYTHONPATH``), as they would an installed one. Everything is stopped by its pid, whatever
the test did: each node's process group (``ray start --block`` and the GCS, raylet and agents it started) gets
SIGKILL, then any worker process that appeared meanwhile (workers start sessions of their own) and outlives its
raylet; ``ray stop`` is never called, as it would stop every Ray on the machine.

Ray names its nodes by this machine's address (it replaces 127.0.0.1 by it for a multi-node cluster), so its own
processes talk over that interface: nothing leaves the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
STARTED = "Ray runtime started"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_processes() -> dict[int, str]:
    """pid → command line (a worker's is its title, ``ray::IDLE``, ``ray::evaluate_call``) of every Ray process."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd.startswith("ray::") or "/ray/" in cmd or "bin/ray start" in cmd:
            found[int(entry)] = cmd
    return found


def _ours(pid: int, groups: set[int], raylets: set[int], temp: Path) -> bool:
    """Whether a Ray process belongs to this cluster: in one of its nodes' process groups, a worker of one of its
    raylets (``RAY_RAYLET_PID`` in its environment), or naming its temp folder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    pgid = int(stat.rpartition(")")[2].split()[2])
    raylet = next((int(e.partition(b"=")[2]) for e in environ if e.startswith(b"RAY_RAYLET_PID=")), None)
    return pgid in groups or raylet in raylets or str(temp).encode() in cmd


@dataclass
class Cluster:
    address: str  # 127.0.0.1:PORT of the head
    temp: Path
    env: dict[str, str]  # what a client of this cluster sets: token authentication and this cluster's token
    nodes: list[subprocess.Popen] = field(default_factory=list)


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(["ray", "start", "--block", *args], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def _wait_started(process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while STARTED not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start did not start (exit {process.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@contextmanager
def ray_cluster(nodes: int = 2, cpus: int = 1, timeout: float = 120.0, token: Path | None = None) -> Iterator[Cluster]:
    """A head and ``nodes - 1`` more nodes of `cpus` CPUs each, on this machine; stopped when the block ends.

    `token`: a file holding the token to authenticate with (clusters one client uses share it: Ray reads a process's
    token once); None writes a new one in the cluster's temp folder."""
    before = set(ray_processes())
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    port = free_port()
    if token is None:
        token = temp / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "RAY_USAGE_STATS_ENABLED": "0", **auth}
    env.pop("RAY_AUTH_TOKEN", None)
    cluster = Cluster(address=f"127.0.0.1:{port}", temp=temp, env=auth)
    try:
        for i in range(nodes):
            args = ["--num-cpus", str(cpus), "--disable-usage-stats", "--temp-dir", str(temp),
                    "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                    "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                    "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]
            if i == 0:
                args += ["--head", "--port", str(port), "--include-dashboard", "false",
                         "--ray-client-server-port", str(free_port())]
            else:
                args += ["--address", cluster.address]
            log = temp / f"node{i}.out"
            cluster.nodes.append(_start(args, log, env))
            _wait_started(cluster.nodes[-1], log, timeout)
        yield cluster
    finally:
        groups = {process.pid for process in cluster.nodes}
        raylets = {pid for pid, cmd in ray_processes().items()
                   if "raylet/raylet" in cmd and _ours(pid, groups, set(), temp)}
        mine = {pid for pid in set(ray_processes()) - before if _ours(pid, groups, raylets, temp)}
        for process in reversed(cluster.nodes):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=30)
        deadline = time.monotonic() + 15
        while (left := mine & set(ray_processes())) and time.monotonic() < deadline:
            time.sleep(0.5)  # workers notice that their raylet is gone and exit
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)
