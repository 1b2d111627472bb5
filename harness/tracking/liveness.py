"""Whether a RUNNING run still has a live process behind it (pure decisions; `harness.tracking.store` acts on them).

Every run the harness opens carries the tags ``host``, ``pid`` and ``heartbeat`` (`harness.tracking.schema.RunTags`),
and while it is open its process refreshes ``heartbeat`` every `interval()` seconds. A process that dies without
ending its runs (kill -9, an OOM kill, a machine gone) leaves them RUNNING; such a run is an orphan when

- its process ran on this machine and is gone: no process has its pid, or the one that has it started after the run
  did (the pid was reused) — known at once;
- or, wherever it ran, its heartbeat is older than `stale_after()` (ten heartbeats: a machine that is merely busy
  still beats; a clock skew of minutes between machines does not make a live run look dead).

Runs without these tags (written by other tools, or by a harness older than the heartbeat) are never judged
orphans: nobody can tell whether their process is alive.

``HARNESS_HEARTBEAT_S`` sets the interval (default 30 s).
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

from harness.tracking.schema import RunTags

DEFAULT_INTERVAL_S = 30.0


def interval() -> float:
    """Seconds between two heartbeats of an open run (``HARNESS_HEARTBEAT_S``, default 30)."""
    try:
        value = float(os.environ.get("HARNESS_HEARTBEAT_S", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value > 0 else DEFAULT_INTERVAL_S


def stale_after() -> float:
    """A heartbeat older than this many seconds means its process is gone (ten intervals)."""
    return 10 * interval()


@lru_cache(maxsize=1)
def host() -> str:
    """This machine's name, as runs are tagged with it."""
    return socket.gethostname()


def _boot_time() -> float | None:
    try:
        for line in open("/proc/stat"):  # noqa: SIM115 - a few lines, closed by the GC
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def process_start(pid: int) -> float | None:
    """When process `pid` started (epoch seconds; Linux ``/proc``), or None when that cannot be read."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115
    except OSError:
        return None
    boot = _boot_time()
    fields = stat.rsplit(")", 1)[-1].split()  # the name in parentheses may hold spaces
    if boot is None or len(fields) < 20:
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def alive(pid: int, since: float | None = None) -> bool:
    """Whether a process with `pid` exists here and (when `since` is given and its start time readable) had
    started by `since` (epoch seconds) — a younger process holds a reused pid."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if since is not None:
        started = process_start(pid)
        if started is not None and started > since + 2:  # /proc's start time has clock-tick resolution
            return False
    return True


def orphaned(tags: RunTags, *, started: float, now: float, here: str | None = None) -> str | None:
    """Why a RUNNING run with `tags`, started at `started` (epoch seconds), has no live process any more, or None
    when it may still be alive (or cannot be judged)."""
    if tags.pid is None or tags.heartbeat is None:
        return None
    try:
        pid, beat = int(tags.pid), float(tags.heartbeat)
    except ValueError:
        return None
    if tags.host == (here or host()) and not alive(pid, since=started):
        return f"process {pid} on {tags.host} is gone"
    age = now - beat
    if age > stale_after():
        return f"no heartbeat from process {pid} on {tags.host} for {age:.0f} s"
    return None
