"""The `llm` judge against a stand-in OpenAI-compatible server on 127.0.0.1, started here.

The server reads the marker in the question: ``normal`` → a well-formed verdict that always prefers position A,
``malformed`` → a reply with no verdict label, ``slow`` → no reply before the client's timeout, ``err500`` → HTTP
500 every time, ``err400`` → HTTP 400, ``flaky`` → HTTP 503 once, then a verdict. A request without the expected
bearer key gets HTTP 401.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.arena.judges import build_judge
from harness.arena.llm_judge import LLMJudge
from harness.cli import main
from harness.config import ArenaConfig, LLMJudgeConfig
from harness.errors import HarnessError

SECRET = "sk-test-Zq81xVbNw3-never-log-me"
KEY_ENV = "HARNESS_TEST_JUDGE_KEY"
MARKERS = ("normal", "malformed", "slow", "err500", "err400", "flaky")


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.requests.append(body)
        if self.headers.get("Authorization") != f"Bearer {SECRET}":
            return self._send(401, {"error": "bad key"})
        user = body["messages"][-1]["content"]
        marker = next(m for m in MARKERS if f"marker-{m}" in user)
        with server.lock:
            server.counts[marker] = server.counts.get(marker, 0) + 1
            seen = server.counts[marker]
        if marker == "slow":
            time.sleep(1.0)
        if marker == "err500":
            return self._send(500, {"error": "boom"})
        if marker == "err400":
            return self._send(400, {"error": "bad request"})
        if marker == "flaky" and seen == 1:
            return self._send(503, {"error": "busy"})
        good = "A looks better.\n\nMy final verdict: [[A>B]]"
        text = "Assistant A is clearly fine." if marker == "malformed" else good
        self._send(200, {"choices": [{"message": {"role": "assistant", "content": text}}],
                         "usage": {"prompt_tokens": 100, "completion_tokens": 10}})

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass


@pytest.fixture
def judge_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.lock, server.requests, server.counts = threading.Lock(), [], {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def _judge(url, **kw):
    return LLMJudge(url, "stand-in-judge", KEY_ENV, timeout_s=0.4, retries=1, backoff_s=0.01, concurrency=4,
                    input_usd_per_mtok=2.0, output_usd_per_mtok=8.0, **kw)


def test_llm_judge_verdicts_failures_retries_and_cost(judge_server, key):
    server, url = judge_server
    judge = _judge(url)
    row = lambda m: {"id": m, "prompt": f"question marker-{m}", "reference": "ref"}  # noqa: E731
    ok = judge(row("normal"), "x", "y")
    assert ok.ok and ok.verdict == "A>B" and ok.calls == 1
    assert (ok.input_tokens, ok.output_tokens) == (100, 10)
    assert ok.cost_usd == pytest.approx((100 * 2.0 + 10 * 8.0) / 1e6)
    assert "Reference Answer" in server.requests[-1]["messages"][-1]["content"]

    bad = judge(row("malformed"), "x", "y")
    assert not bad.ok and bad.error.startswith("malformed verdict") and bad.calls == 1
    slow = judge(row("slow"), "x", "y")
    assert not slow.ok and "timed out" in slow.error and slow.calls == 2  # retried once
    e500 = judge(row("err500"), "x", "y")
    assert not e500.ok and e500.error == "HTTP 500 Internal Server Error" and e500.calls == 2
    e400 = judge(row("err400"), "x", "y")
    assert not e400.ok and "HTTP 400" in e400.error and e400.calls == 1  # a client error is not retried
    flaky = judge(row("flaky"), "x", "y")
    assert flaky.ok and flaky.calls == 2
    assert SECRET not in repr(judge) and SECRET not in json.dumps(vars(judge), default=str)


def test_llm_judge_needs_an_endpoint_and_a_key(monkeypatch):
    with pytest.raises(HarnessError, match="needs an endpoint"):
        build_judge(ArenaConfig(judge="llm"))
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(HarnessError, match="NO_SUCH_KEY_VAR"):
        build_judge(ArenaConfig(judge="llm", llm=LLMJudgeConfig(base_url="http://127.0.0.1:9/v1", model="m",
                                                                api_key_env="NO_SUCH_KEY_VAR")))


def test_cli_llm_judge_without_endpoint_is_a_one_line_error(tiny_checkpoint, tmp_path, capsys):
    code = main(["arena", "--models", f"a={tiny_checkpoint}", f"b={tiny_checkpoint}", "--judge", "llm",
                 "--results", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("harness: error:") and "judge-base-url" in err and len(err.splitlines()) == 1


def test_llm_arena_end_to_end_records_failures_and_never_logs_the_key(judge_server, key, tiny_checkpoint, tmp_path,
                                                                        capsys):
    server, url = judge_server
    prompts = tmp_path / "prompts.jsonl"
    lines = [{"id": f"{m}-{i}", "prompt": f"Say something marker-{m} {i}"} for m in MARKERS for i in range(2)]
    prompts.write_text("".join(json.dumps(x) + "\n" for x in lines))
    results = tmp_path / "results"
    argv = ["arena", "--models", f"a={tiny_checkpoint}", f"b={tiny_checkpoint}", "--prompts", str(prompts),
            "--judge", "llm", "--judge-base-url", url, "--judge-model", "stand-in-judge",
            "--judge-api-key-env", KEY_ENV, "--results", str(results),
            "--set", "arena.llm.timeout_s=0.4", "--set", "arena.llm.retries=1",
            "--set", "arena.llm.backoff_s=0.01",
            "--set", "arena.max_new_tokens=4", "--set", "arena.bootstrap=50",
            "--set", "arena.llm.input_usd_per_mtok=1.0"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    # failed judgements are reported, not hidden: malformed ×2, slow ×2, err500 ×2, err400 ×2 prompts, 2 games each
    assert "16 of 24 judgements failed" in captured.err
    assert "not counted as ties" in captured.err

    from harness.tracking import store

    client = store.client(store.tracking_uri(results))
    runs = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["harness.kind"] == "arena"
    run = runs[0]
    metrics = run.data.metrics
    assert metrics["judge/judgements_failed"] == 16
    assert metrics["judge/battles"] == 4 and metrics["judge/battles_failed"] == 8
    assert metrics["judge/input_tokens"] > 0 and metrics["judge/cost_usd"] > 0
    assert run.data.params["arena.llm.api_key_env"] == KEY_ENV
    assert run.data.tags["harness.judge"] == "llm:stand-in-judge"

    art = Path(run.info.artifact_uri.removeprefix("file://"))
    battles = [json.loads(x) for x in (art / "arena" / "battles.jsonl").read_text().splitlines()]
    assert {b["prompt_id"].split("-")[0] for b in battles} == {"normal", "flaky"}
    assert all(b["winner"] == "tie" for b in battles)  # the stand-in always prefers position A
    failures = [json.loads(x) for x in (art / "arena" / "failures.jsonl").read_text().splitlines()]
    assert {f["prompt_id"].split("-")[0] for f in failures} == {"malformed", "slow", "err500", "err400"}

    # the key is nowhere in the store: params, tags, metrics, artifacts, the database file, the caches
    texts = [json.dumps(run.data.params), json.dumps(run.data.tags), json.dumps(list(metrics))]
    assert not any(SECRET in t for t in texts)
    for f in results.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f"API key leaked into {f}"
    assert all(r.get("model") == "stand-in-judge" for r in server.requests)
