"""A quiet terminal: one progress line per phase, and the libraries' own output in a log file (shown with --verbose).

The end-to-end checks read the terminal of the session's `harness run --quick` (tests/conftest.py `quick_process`:
a real process, its stdout and stderr captured as pipes), then run `harness --verbose eval` on its base checkpoint.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import harness_process

from harness import capture, console

MAX_LINES = 60
LIBRARY_NOISE = ("Overwriting default num_fewshot", "nltk_data", "fatal: not a git repository", "it/s")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _phase(stream: io.StringIO, monkeypatch) -> str:
    monkeypatch.setattr(sys, "stderr", stream)
    with console.progress("train sft", 3, "steps") as bar:
        for _ in range(3):
            bar.update(loss=0.5)
        console.info("a message")
    return stream.getvalue()


def test_a_terminal_rewrites_one_line_and_ends_it_with_a_summary(monkeypatch):
    monkeypatch.setattr(console, "_REDRAW", 0.0)
    text = _phase(_Terminal(), monkeypatch)
    lines = text.split("\n")
    assert len(lines) == 3 and lines[-1] == ""  # the message and the summary; the rest was rewritten in place
    assert "train sft: 2/3 steps, loss=0.5" in lines[0] and lines[0].endswith("a message")
    assert lines[1].split("\r")[-1] == "train sft: 3 steps, loss=0.5 (in 0s)"


def test_a_pipe_gets_no_rewrites_only_the_summary(monkeypatch):
    text = _phase(io.StringIO(), monkeypatch)
    assert "\r" not in text
    assert text.splitlines() == ["a message", "train sft: 3 steps, loss=0.5 (in 0s)"]


def test_a_pipe_gets_a_line_per_minute_of_a_long_phase(monkeypatch):
    monkeypatch.setattr(console, "MINUTE", 0.0)
    text = _phase(io.StringIO(), monkeypatch)
    assert text.splitlines()[0] == "train sft: 1/3 steps, loss=0.5 (0s)" and len(text.splitlines()) == 5


@pytest.mark.parametrize("terminal", [io.StringIO, _Terminal])
def test_a_failed_phase_leaves_the_last_line_to_the_error_and_logs_where_it_stopped(monkeypatch, tmp_path, terminal):
    stream = terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    with capture.session("eval"):
        log = capture.log_to(tmp_path)
        with pytest.raises(RuntimeError), console.progress("eval base", 10, "requests") as bar:
            bar.update(4)
            raise RuntimeError("model went away")
        console.error("the model went away")
    assert stream.getvalue().split("\r")[-1] == "harness: error: the model went away\n"
    assert "eval base: stopped at 4/10 requests (0s)" in log.read_text()


def _library_output() -> None:
    print("a library print")
    print("a library line on stderr", file=sys.stderr)
    logging.getLogger("lm_eval.evaluator").warning("Overwriting default num_fewshot of a task")


@pytest.mark.parametrize("verbose", [False, True])
def test_a_session_logs_library_output_and_shows_it_only_when_verbose(tmp_path, capsys, verbose):
    before = sys.stdout, sys.stderr
    with capture.session("eval", verbose=verbose):
        log = capture.log_to(tmp_path)
        _library_output()
        console.info("a harness line")
        console.result("the result table")
    out, err = capsys.readouterr()
    assert out == "the result table\n"
    assert "a harness line" in err
    assert log.parent == tmp_path / "logs" and log.name.startswith("harness-eval-")
    text = log.read_text()
    assert "the result table" in text
    for line in ("a library print", "a library line on stderr", "num_fewshot", "a harness line"):
        assert line in text
        assert (line in err) == (verbose or line == "a harness line"), line
    assert (sys.stdout, sys.stderr) == before


_SCRIPT = """
import os, subprocess, sys
from harness import capture, console
with capture.session("run", capture_fds=True):
    capture.log_to(sys.argv[1])
    subprocess.run(["sh", "-c", "echo from a subprocess >&2"])
    os.write(1, b"written to fd 1\\n")
    console.result("the result")
"""


def test_a_session_with_descriptors_catches_subprocess_and_c_level_output(tmp_path):
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the result\n" and done.stderr == ""
    text = next((tmp_path / "logs").glob("harness-run-*.log")).read_text()
    assert "from a subprocess" in text and "written to fd 1" in text


def test_a_crash_is_one_line_naming_the_log_that_holds_the_traceback(tmp_path):
    code = (
        "import sys\n"
        "import harness.runner_cli as r\n"
        "from harness import capture\n"
        "def boom(args):\n"
        "    capture.log_to(sys.argv[-1])\n"
        "    raise RuntimeError('boom')\n"
        "r._run = boom\n"
        "from harness.cli import main\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code, "run", "--results", str(tmp_path)], capture_output=True,
                          text=True, check=False, timeout=60)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("harness: error: unexpected RuntimeError: boom (traceback in ") and "Traceback" not in \
        done.stderr
    log = Path(last.split("(traceback in ")[1].rstrip(")"))
    assert log.parent == tmp_path / "logs" and "Traceback" in log.read_text() and "boom" in log.read_text()


def _lines(text: str) -> list[str]:
    """Terminal lines: a line rewritten with carriage returns counts once."""
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []


@pytest.mark.slow
def test_run_quick_prints_a_short_terminal_and_logs_the_libraries(quick_process):
    results, done = quick_process
    terminal = done.stdout + done.stderr
    assert len(_lines(done.stdout)) + len(_lines(done.stderr)) <= MAX_LINES, terminal
    for noise in LIBRARY_NOISE:
        assert noise not in terminal, noise
    assert "\r" not in terminal  # pipes get no rewrites
    for phase in ("train base:", "eval base:", "train sft:", "train dpo:", "train rlvr:", "eval rlvr:",
                  "arena answers:", "arena judging:"):
        assert phase in done.stderr, phase
    assert "parent run:" in done.stdout and "open the MLflow UI" in done.stdout
    (log,) = (results / "logs").glob("harness-run-*.log")
    assert done.stderr.splitlines()[-1] == f"log: {log}"
    text = log.read_text()
    assert "Overwriting default num_fewshot" in text and "lm_eval.evaluator" in text and "it/s" in text
    assert "FutureWarning" in text and "FutureWarning" not in terminal  # transformers' deprecation warnings


@pytest.mark.slow
def test_verbose_shows_library_output_on_the_terminal(quick_process, tmp_path):
    results, _ = quick_process
    base = results / "checkpoints" / "embedded" / "base"
    done = harness_process("--verbose", "eval", "--model", str(base), "--suite", "tiny", "--limit", "4", "--results",
                           str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Overwriting default num_fewshot" in done.stderr and "it/s" in done.stderr
    assert "overall" in done.stdout and "MLflow run:" in done.stdout  # results still on stdout, libraries not
    assert "num_fewshot" not in done.stdout
    (log,) = (tmp_path / "logs").glob("harness-eval-*.log")
    assert "Overwriting default num_fewshot" in log.read_text()
