"""``harness sync`` and ``harness runs``: the record's own upkeep.

    harness sync                   # record what ./results' outbox kept while the server did not answer
    harness sync --results DIR     # of another results folder
    harness runs [--reap]          # the store's RUNNING runs; --reap ends KILLED those whose process is gone

Each entry of ``<results>/outbox/`` (`harness.tracking.outbox`) becomes one run on the store in force
(``MLFLOW_TRACKING_URI``), exactly once however often this runs or wherever it was killed; one line per entry, then a
summary (exit code 0; 1 when an entry could not be read or was refused, which then stays). An empty outbox is said
without asking the server; otherwise the server is pinged first, and one that still does not answer is one line,
exit code 3, the entries kept. MLflow's own output goes to ``<results>/logs/`` (`harness.capture`).

Only argparse is imported here; MLflow loads when the command runs.
"""

from __future__ import annotations

import argparse


def add_parsers(sub) -> None:
    """Register ``sync`` on `sub` (argparse subparsers)."""
    s = sub.add_parser(
        "sync",
        help="record on the tracking server what the outbox kept while it did not answer",
        description="Record every entry of <results>/outbox/ (evals and nightlies computed while the MLflow "
        "tracking server did not answer) on the store in force (MLFLOW_TRACKING_URI), exactly once: an entry "
        "already recorded is recognised by its record id and removed; a recorded one is removed after its run "
        "FINISHED.",
    )
    s.add_argument("--results", metavar="DIR", help="results folder whose outbox to record (default: run.results)")
    s.set_defaults(func=_sync)

    r = sub.add_parser(
        "runs",
        help="list the store's RUNNING runs; --reap ends KILLED those whose process is gone",
        description="List the RUNNING runs of the store in force (MLFLOW_TRACKING_URI, else <results>/mlflow.db) "
        "with the host and process holding each and its heartbeat's age. A run whose process is gone (kill -9, an "
        "OOM kill, a lost machine: its pid is gone on this host, or no heartbeat for ten intervals) is an orphan; "
        "every other command ends orphans KILLED before it starts, --reap does only that.",
    )
    r.add_argument("--results", metavar="DIR", help="results folder of the default sqlite store (default: results)")
    r.add_argument("--reap", action="store_true", help="end the orphans KILLED, tagged with why")
    r.set_defaults(func=_runs)


def _runs(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from harness import console
    from harness.report.tables import render
    from harness.tracking import store

    results = args.results or "results"
    rows = store.running(results)
    if not rows:
        where = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(results).resolve() / 'mlflow.db'}"
        console.result(f"no RUNNING run in {where}")  # (a missing results folder is not created for this)
        return 0
    table = [[r["run_id"], r["name"], r["experiment"], r["kind"], r["host"], r["pid"],
              "-" if r["heartbeat_age_s"] is None else r["heartbeat_age_s"], r["orphan"] or "alive"]
             for r in rows]
    console.result(render(table, ["run", "name", "experiment", "kind", "host", "pid", "heartbeat_age_s", "process"]))
    if args.reap:
        reaped = store.reap(results, rows)
        console.result(f"ended KILLED {len(reaped)} orphaned run(s)" if reaped else "no orphaned run to end")
    else:
        orphans = sum(bool(r["orphan"]) for r in rows)
        if orphans:
            console.result(f"{orphans} orphaned run(s): harness runs --reap ends them KILLED (so does any command)")
    return 0


def _sync(args: argparse.Namespace) -> int:
    import os

    from harness import capture, console
    from harness.config import RunConfig
    from harness.errors import ServerUnreachable
    from harness.tracking import outbox, store

    results = args.results or RunConfig().results
    box = outbox.folder(results)
    outbox.tidy(results)
    if not outbox.entries(results):
        console.result(f"nothing to sync: the outbox {box} holds no entry")
        return 0
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = store.tracking_uri(results)
    counts = {"recorded": 0, "already": 0, "unreadable": 0, "failed": 0}
    try:
        store.ping(results)
        store.reap(results)  # a cut-short run of an entry, left RUNNING by a process that died, ends KILLED
        # MLflow's own output (its "View run" lines) goes to <results>/logs/, as for the commands that run libraries
        with capture.session("sync", verbose=getattr(args, "verbose", False)):
            capture.log_to(results)
            for outcome in outbox.sync(results):
                console.result(outcome.line())
                counts[outcome.status] += 1
    except Exception as err:
        if not store.unreachable(err):
            raise
        cause = err.__context__ if isinstance(err, ServerUnreachable) and err.__context__ else err
        raise store.server_unreachable(uri, cause, results, outbox=box) from None
    left = len(outbox.entries(results))
    console.result(f"harness sync: {counts['recorded']} recorded, {counts['already']} already recorded on {uri}; "
                   + (f"{left} left in the outbox {box}" if left else f"the outbox {box} is empty"))
    return 1 if counts["unreadable"] or counts["failed"] else 0
