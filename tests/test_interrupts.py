"""An interrupt is never swallowed: a Ctrl-C or SIGTERM that a library catches (a thread pool's callback that
catches everything) still ends the command as interrupted, with exit code 130 or 128 + N, not as a success."""

from __future__ import annotations

import os
import signal

import pytest

from harness import cli
from harness.ratings import cli as ratings_cli


@pytest.fixture()
def default_handlers():
    """A process's own SIGINT and SIGTERM handlers, whatever an earlier test of this worker left behind; put back
    after the test."""
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
                signal.SIGTERM: signal.signal(signal.SIGTERM, signal.SIG_DFL)}
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_swallowed_interrupt_still_stops_the_command(monkeypatch, capsys, sig, code, default_handlers):
    def swallowing(args):
        try:
            os.kill(os.getpid(), sig)
        except BaseException:  # noqa: BLE001 - what the library did
            pass
        print("finished as if nothing happened")
        return 0

    monkeypatch.setattr(ratings_cli, "_elo_prob", swallowing)
    assert cli.main(["elo", "prob", "100"]) == code
    err = capsys.readouterr().err
    assert ("interrupted" if sig == signal.SIGINT else "terminated by SIGTERM") in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_uninterrupted_command_keeps_its_code(capsys):
    assert cli.main(["elo", "prob", "100"]) == 0
    assert "0.64" in capsys.readouterr().out


def test_a_ctrl_c_swallowed_mid_poll_stops_the_watch(monkeypatch, capsys, tmp_path, default_handlers):
    from harness import watch

    looks = []

    def swallowing(w):  # a look at the record during which a library catches the Ctrl-C
        looks.append(1)
        assert len(looks) < 3, "the watch went on polling after a Ctrl-C"
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:  # noqa: BLE001 - what the library did
            pass
        return None

    monkeypatch.setattr(watch, "_pending", swallowing)
    (tmp_path / "out").mkdir()
    code = cli.main(["watch", str(tmp_path / "out"), "--suite", "tiny", "--poll", "0.05",
                     "--results", str(tmp_path / "results")])
    assert code == 130 and looks == [1]
    assert capsys.readouterr().err.strip().splitlines()[-1] == "harness: interrupted"
