"""Storage: every place a command writes is checked before any model work (exit code 4 when it cannot be written,
2 when the path is of the wrong kind), and a disk that fills up mid-command ends the open MLflow run FAILED with one
line naming what could not be written and where, and no temporary file left behind.

Root ignores file permissions, so unwritable places here are a path under a regular file, ``/sys``, ``/dev/full``
(every write: ENOSPC), a write monkeypatched to fail with ENOSPC, and — where this machine lets a test mount one in
a private mount namespace — a real read-only tmpfs and a real 40 KiB tmpfs that fills up during a nightly.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import storage
from harness.cli import main
from harness.errors import HarnessError, StorageError
from harness.tracking import store

EVAL = ["eval", "--suite", "tiny", "--limit", "2"]


@pytest.fixture(scope="module")
def eval_cache(tiny_checkpoint, tmp_path_factory) -> Path:
    """The eval cache of one `harness eval --suite tiny --limit 2` of the tiny checkpoint: tests copy it so that
    their eval does no model work."""
    results = tmp_path_factory.mktemp("cached")
    assert main([*EVAL, "--model", str(tiny_checkpoint), "--results", str(results)]) == 0
    return results / "eval_cache"


def _results_with_cache(eval_cache: Path, tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(eval_cache, results / "eval_cache")
    return results


def _error_line(capsys, code: int) -> str:
    """The single error line on stderr (progress lines may come before it), after checking the exit code."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    errors = [line for line in lines if line.startswith("harness: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], captured.err
    assert "Traceback" not in captured.err + captured.out
    return errors[0].removeprefix("harness: error: ")


def _leftovers(folder: Path) -> list[Path]:
    """Temporary files (``*.tmp<pid>``, ``.harness-probe-*``) under `folder`."""
    return [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".harness-probe-")]


def _runs(results: Path):
    return store.search_runs(store.tracking_uri(results), "harness")


# --- checked before any work -----------------------------------------------------------------------------------------

COMMANDS = {
    "eval": [*EVAL, "--model", "{ckpt}"],
    "nightly": ["nightly", "--candidate", "{ckpt}", "--baseline", "champion"],
    "arena": ["arena", "--models", "a={ckpt}", "b={ckpt}", "--limit", "2"],
    "run": ["run", "--quick"],
    "import": ["import", "lm-eval", "{tmp}"],
    "compare": ["compare", "a", "b"],
    "rate": ["rate", "{tmp}/b.jsonl", "--mlflow"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("where, reason", [("{tmp}/file/results", "a file is in the way (not a folder)"),
                                           ("/sys/harness-results", "")])
def test_a_results_folder_that_cannot_be_written_stops_every_command_first(command, where, reason, tmp_path,
                                                                          tiny_checkpoint, no_model_work, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "b.jsonl").write_text('{"model_a": "a", "model_b": "b", "winner": "model_a"}\n')
    fill = {"{tmp}": str(tmp_path), "{ckpt}": str(tiny_checkpoint)}
    results = where.replace("{tmp}", str(tmp_path))
    argv = [a.replace("{tmp}", fill["{tmp}"]).replace("{ckpt}", fill["{ckpt}"]) for a in COMMANDS[command]]
    assert main([*argv, "--results", results]) == 4
    err = _error_line(capsys, 4)
    assert err.startswith(f"cannot write results folder {results!r}: {reason}"), err
    assert not Path(results).exists()


def test_an_output_file_that_names_a_folder_is_bad_input_not_storage(tmp_path, tiny_checkpoint, no_model_work,
                                                                     capsys):
    (tmp_path / "out").mkdir()
    assert main([*EVAL, "--model", str(tiny_checkpoint), "--json", str(tmp_path / "out"),
                 "--results", str(tmp_path / "r")]) == 2
    assert _error_line(capsys, 2) == f"--json file {str(tmp_path / 'out')!r} is a folder; name a file"


def test_json_on_a_full_device_is_exit_4_before_any_model_work(tmp_path, tiny_checkpoint, no_model_work, capsys):
    results = tmp_path / "results"
    assert main([*EVAL, "--model", str(tiny_checkpoint), "--json", "/dev/full", "--results", str(results)]) == 4
    assert _error_line(capsys, 4) == "cannot write --json file '/dev/full': no space left on device"
    assert not results.exists()  # no cache, no log, no MLflow run: nothing was started


# --- a disk that fills up mid-command --------------------------------------------------------------------------------


def _full_disk_for(monkeypatch, matches) -> list[Path]:
    """Writes through `harness.storage.write_text` to a temporary file whose path `matches` fail with ENOSPC after
    the file is created (as a full disk does); the paths that failed."""
    failed = []

    class Full:
        def __init__(self, file):
            self.file = file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_open(path, *args, **kwargs):
        file = open(path, *args, **kwargs)
        if matches(Path(path)):
            failed.append(Path(path))
            return Full(file)
        return file

    monkeypatch.setattr(storage, "open", full_open, raising=False)
    return failed


def test_eval_cache_full_mid_nightly_ends_its_run_failed_with_one_line_and_no_temp_file(tmp_path, tiny_checkpoint,
                                                                                        monkeypatch, capsys):
    baseline = tmp_path / "baseline"
    shutil.copytree(tiny_checkpoint, baseline)
    (baseline / "NOTE.txt").write_text("another checkpoint: the same weights, another content hash\n")
    results = tmp_path / "results"
    failed = _full_disk_for(monkeypatch, lambda p: p.parent.name == "eval_cache")
    code = main(["nightly", "--candidate", str(tiny_checkpoint), "--baseline", str(baseline), "--suite", "tiny",
                 "--set", "eval.limit=2", "--results", str(results)])
    assert code == 4 and failed
    err = _error_line(capsys, 4)
    assert err.startswith(f"cannot write the eval cache entry '{results / 'eval_cache'}/") and \
        err.endswith(".json': no space left on device"), err
    runs = _runs(results)
    assert list(runs["tags.harness.kind"]) == ["nightly"] and list(runs["status"]) == ["FAILED"]
    assert not _leftovers(results / "eval_cache")


def test_full_disk_while_recording_ends_the_eval_run_failed(eval_cache, tmp_path, tiny_checkpoint, monkeypatch,
                                                            capsys):
    results = _results_with_cache(eval_cache, tmp_path)

    def full(self, path, artifact_path=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{results}/mlartifacts/scores.csv")

    monkeypatch.setattr(store.Run, "log_artifact", full)
    assert main([*EVAL, "--model", str(tiny_checkpoint), "--results", str(results)]) == 4
    err = _error_line(capsys, 4)
    assert err == (f"cannot write '{results}/mlartifacts/scores.csv': no space left on device; free some space or "
                   "point --results at another disk")
    assert list(_runs(results)["status"]) == ["FAILED"]


def test_a_json_file_the_disk_cannot_hold_keeps_the_old_one(eval_cache, tmp_path, tiny_checkpoint, monkeypatch,
                                                            capsys):
    results = _results_with_cache(eval_cache, tmp_path)
    out = tmp_path / "scores.json"
    out.write_text("old")
    _full_disk_for(monkeypatch, lambda p: p.name.startswith(".scores.json.tmp"))
    assert main([*EVAL, "--model", str(tiny_checkpoint), "--json", str(out), "--results", str(results)]) == 4
    assert _error_line(capsys, 4) == f"cannot write --json file {str(out)!r}: no space left on device"
    assert out.read_text() == "old" and not _leftovers(tmp_path)
    assert list(_runs(results)["status"]) == ["FINISHED"]  # the record was whole before the extra file


def _can_mount(tmp_path: Path) -> None:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=4k tmpfs {tmp_path}"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.decode().strip()}")


def test_a_real_read_only_results_folder_is_exit_4_before_any_work(tmp_path, tiny_checkpoint):
    """A read-only file system as the results folder (which root's permissions cannot fake): one line, exit 4."""
    _can_mount(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (f"mount -t tmpfs -o ro,size=4k tmpfs {ro} && {sys.executable} -m harness.cli eval --model "
              f"{tiny_checkpoint} --suite tiny --results {ro}/results")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, check=False, env=env, timeout=120)
    assert done.returncode == 4, done.stderr
    expected = f"harness: error: cannot write results folder '{ro}/results': read-only file system"
    assert done.stderr.splitlines() == [expected]


@pytest.mark.slow
def test_a_real_full_disk_during_a_nightly(tmp_path, tiny_checkpoint):
    """A 40 KiB tmpfs as the results folder (mounted in a private mount namespace; the MLflow store elsewhere):
    the eval cache fills it, the nightly ends FAILED in one line, exit 4, and no temporary file is left."""
    _can_mount(tmp_path)
    full, baseline = tmp_path / "full", tmp_path / "baseline"
    full.mkdir()
    shutil.copytree(tiny_checkpoint, baseline)
    (baseline / "NOTE.txt").write_text("another checkpoint: the same weights, another content hash\n")
    nightly = [sys.executable, "-m", "harness.cli", "nightly", "--candidate", str(tiny_checkpoint), "--baseline",
               str(baseline), "--suite", "tiny", "--set", "eval.limit=2", "--results", str(full)]
    leftovers = tmp_path / "leftovers.txt"
    script = (f"mount -t tmpfs -o size=40k tmpfs {full} && {' '.join(nightly)}; code=$?; "
              f"find {full} -name '*.tmp*' -o -name '.harness-probe-*' > {leftovers}; exit $code")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, check=False, env=env, timeout=300)
    assert done.returncode == 4, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("harness: error: ")]
    assert len(errors) == 1 and done.stderr.splitlines()[-1] == errors[0], done.stderr
    assert "cannot write the eval cache entry" in errors[0] and errors[0].endswith("no space left on device")
    assert leftovers.read_text() == ""  # no temporary file on the full disk
    runs = store.search_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "harness")
    assert list(runs["status"]) == ["FAILED"]


# --- the helpers -----------------------------------------------------------------------------------------------------


def test_write_text_is_all_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old")
    target.chmod(0o640)
    storage.write_text(target, "new", "--json file")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o640  # permissions kept
    link = tmp_path / "link.json"
    link.symlink_to(target)
    storage.write_text(link, "via link", "--json file")
    assert link.is_symlink() and target.read_text() == "via link"
    storage.write_text("/dev/null", "discarded", "--json file")  # a device is written in place

    _full_disk_for(monkeypatch, lambda p: True)
    with pytest.raises(StorageError, match=r"cannot write --json file '.*out.json': no space left on device"):
        storage.write_text(target, "too big", "--json file")
    assert target.read_text() == "via link" and not _leftovers(tmp_path)

    def interrupted(path, *args, **kwargs):
        Path(path).write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(storage, "open", interrupted, raising=False)
    with pytest.raises(KeyboardInterrupt):
        storage.write_text(target, "new", "--json file")
    assert target.read_text() == "via link" and not _leftovers(tmp_path)
    with pytest.raises(HarnessError, match="is a folder"):
        storage.write_text(tmp_path, "x", "--json file")


def test_checks_name_what_where_and_why(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(HarnessError) as err:
        storage.writable_dir(tmp_path / "file", "results folder")
    assert err.value.exit_code == 2 and "is a file, not a folder" in str(err.value)
    with pytest.raises(StorageError) as err:
        storage.writable_dir(tmp_path / "file" / "sub", "eval cache")
    assert err.value.exit_code == 4
    assert str(err.value) == f"cannot write eval cache {str(tmp_path / 'file' / 'sub')!r}: a file is in the way " \
                             "(not a folder)"
    assert storage.writable_dir(tmp_path / "new" / "sub", "results folder", create=False) and \
        not (tmp_path / "new").exists()  # checked without being created
    assert storage.writable_dir(tmp_path / "made", "results folder").is_dir() and not _leftovers(tmp_path)
    before = (tmp_path / "file").stat().st_mtime_ns
    storage.output_file(tmp_path / "file", "--json file")  # an existing file may be overwritten: unchanged by the check
    assert (tmp_path / "file").read_text() == "x" and (tmp_path / "file").stat().st_mtime_ns == before
    storage.output_file("/dev/null", "--json file")
    with pytest.raises(StorageError, match="no space left on device"):
        storage.output_file("/dev/full", "--json file")


def test_storage_error_maps_full_and_read_only_storage_only():
    def chained(inner: BaseException) -> Exception:
        try:
            try:
                raise inner
            except BaseException as err:
                raise RuntimeError("wrapped") from err
        except RuntimeError as outer:
            return outer

    full = storage.storage_error(chained(OSError(errno.ENOSPC, "No space left on device", "/r/mlflow.db")))
    assert isinstance(full, StorageError) and full.exit_code == 4
    assert str(full).startswith("cannot write '/r/mlflow.db': no space left on device")
    assert "read-only file system" in str(storage.storage_error(OSError(errno.EROFS, "Read-only file system", "/r")))
    assert "a write failed: no space left on device" in str(storage.storage_error(OSError(errno.ENOSPC, "x")))
    sqlite = Exception("(sqlite3.OperationalError) database or disk is full")
    assert "database or disk is full" in str(storage.storage_error(chained(sqlite)))
    assert storage.storage_error(OSError(errno.ENOENT, "No such file", "/x")) is None
    assert storage.storage_error(ValueError("nothing to do with storage")) is None


def test_tracking_uri_scheme_is_checked(monkeypatch):
    for uri in ("sqlite:///x.db", "http://127.0.0.1:5000", "postgresql://u@h/db", "postgresql+psycopg2://u@h/db",
                "/tmp/mlruns", "file:///tmp/mlruns", ""):
        storage.check_tracking_uri(uri)
    with pytest.raises(HarnessError, match=r"MLFLOW_TRACKING_URI 'foo://x': .* valid schemes: file, .*sqlite"):
        storage.check_tracking_uri("foo://x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bar://y")
    with pytest.raises(HarnessError, match="'bar://y'"):
        storage.check_tracking_uri()
