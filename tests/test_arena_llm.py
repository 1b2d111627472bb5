"""The `llm` judge against a stand-in OpenAI-compatible server on 127.0.0.1, started here.

The stand-in reads the marker in the question: ``normal`` → a well-formed verdict that always prefers position A,
``malformed`` → a reply with no verdict label, ``slow`` → no reply before the client's timeout, ``slowonce`` → that
once, then a verdict, ``err500`` → HTTP 500 every time (with ``Retry-After-Ms: 20``, to keep the tests fast),
``err400`` → HTTP 400, ``flaky`` → HTTP 503 once, then a verdict, ``flaky2`` → HTTP 503 twice, then a verdict,
``ratelimit`` → HTTP 429 with ``Retry-After: 1`` once, then a verdict, ``hold`` → a verdict after 0.15 s. It
serves only ``/v1/chat/completions`` and the model ``stand-in-judge`` (HTTP 404 otherwise), answers HTTP 401 to a
request without the expected bearer key, and keeps every request's arrival time, the calls in flight at once
(their maximum) and the client connections it saw.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.arena.battles import judge_battles
from harness.arena.judges import build_judge
from harness.arena.llm_judge import LLMJudge
from harness.cli import main
from harness.config import ArenaConfig, LLMJudgeConfig, load_config
from harness.errors import HarnessError

SECRET = "sk-test-Zq81xVbNw3-never-log-me"
KEY_ENV = "HARNESS_TEST_JUDGE_KEY"
MODEL = "stand-in-judge"
MARKERS = ("normal", "malformed", "slowonce", "slow", "err500", "err400", "flaky2", "flaky", "ratelimit", "hold")
GOOD = "A looks better.\n\nMy final verdict: [[A>B]]"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so that the client's connection pool shows

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.requests.append(body)
            server.connections.add(self.client_address)
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            self._answer(server, body)
        finally:
            with server.lock:
                server.in_flight -= 1

    def _answer(self, server, body):
        if self.headers.get("Authorization") != f"Bearer {SECRET}":
            return self._send(401, {"error": {"message": "invalid api key"}})
        if self.path != "/v1/chat/completions" or body.get("model") != MODEL:
            return self._send(404, {"error": {"message": "no such model or route"}})
        user = body["messages"][-1]["content"]
        marker = next((m for m in MARKERS if f"marker-{m}" in user), "normal")
        with server.lock:
            server.arrivals.setdefault(marker, []).append(time.monotonic())
            seen = len(server.arrivals[marker])
        if marker == "slow" or (marker == "slowonce" and seen == 1):
            time.sleep(1.0)
        if marker == "hold":
            time.sleep(0.15)
        if marker == "err500":
            return self._send(500, {"error": "boom"}, {"Retry-After-Ms": "20"})
        if marker == "err400":
            return self._send(400, {"error": "bad request"})
        if (marker == "flaky" and seen == 1) or (marker == "flaky2" and seen <= 2):
            return self._send(503, {"error": "busy"})
        if marker == "ratelimit" and seen == 1:
            return self._send(429, {"error": "slow down"}, {"Retry-After": "1"})
        text = "Assistant A is clearly fine." if marker == "malformed" else GOOD
        self._send(200, {"id": "c", "object": "chat.completion", "model": MODEL,
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": text}}],
                         "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}})

    def _send(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass


@pytest.fixture
def judge_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.lock, server.requests, server.arrivals, server.connections = threading.Lock(), [], {}, set()
    server.in_flight = server.max_in_flight = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def _judge(url, **kw):
    settings = {"timeout_s": 0.4, "retries": 1, "concurrency": 4, "input_usd_per_mtok": 2.0, "output_usd_per_mtok": 8.0}
    return LLMJudge(url, MODEL, KEY_ENV, **{**settings, **kw})


def _row(marker, i=0):
    return {"id": f"{marker}-{i}", "prompt": f"question marker-{marker} {i}", "reference": "ref"}


def test_llm_judge_verdicts_malformed_usage_and_cost(judge_server, key):
    server, url = judge_server
    judge = _judge(url)
    ok = judge(_row("normal"), "x", "y")
    assert ok.ok and ok.verdict == "A>B" and ok.calls == 1 and ok.detail["reply"] == GOOD
    assert (ok.input_tokens, ok.output_tokens) == (100, 10)
    assert ok.cost_usd == pytest.approx((100 * 2.0 + 10 * 8.0) / 1e6)
    sent = server.requests[-1]
    assert sent["model"] == MODEL and sent["temperature"] == 0.0 and sent["max_tokens"] == 1024
    assert "Reference Answer" in sent["messages"][-1]["content"]

    bad = judge(_row("malformed"), "x", "y")  # a reply without a label is a failure, never a tie
    assert bad.verdict is None and not bad.ok and bad.calls == 1
    assert bad.error == "malformed verdict: no [[verdict]] label in the reply"
    assert (bad.input_tokens, bad.output_tokens) == (100, 10)  # the call was made and is paid for
    e400 = judge(_row("err400"), "x", "y")
    assert e400.error == "HTTP 400 Bad Request" and e400.calls == 1  # a client error is not retried
    assert SECRET not in repr(judge) and SECRET not in json.dumps(vars(judge), default=str)


def test_llm_judge_retries_5xx_with_growing_backoff_and_honours_retry_after(judge_server, key):
    server, url = judge_server
    judge = _judge(url, retries=2)
    flaky = judge(_row("flaky2"), "x", "y")  # 503, 503, then a verdict: the client's own exponential backoff
    assert flaky.ok and flaky.calls == 3
    t = server.arrivals["flaky2"]
    first, second = t[1] - t[0], t[2] - t[1]
    assert 0.3 < first < 0.9 and 0.7 < second < 1.8 and second > first  # ~0.5 s, then ~1 s (25 % jitter)

    limited = judge(_row("ratelimit"), "x", "y")  # 429 with Retry-After: 1, then a verdict
    assert limited.ok and limited.calls == 2
    t = server.arrivals["ratelimit"]
    assert 0.95 < t[1] - t[0] < 2.0  # the server's delay, not the client's 0.5 s

    e500 = judge(_row("err500"), "x", "y")  # 500 every time: recorded after 1 + 2 tries
    assert not e500.ok and e500.error == "HTTP 500 Internal Server Error" and e500.calls == 3
    assert len(server.arrivals["err500"]) == 3


def test_llm_judge_timeout_is_retried_then_recorded(judge_server, key):
    server, url = judge_server
    judge = _judge(url)  # timeout 0.4 s, one retry
    again = judge(_row("slowonce"), "x", "y")  # times out once, then answers
    assert again.ok and again.calls == 2 and again.seconds > 0.4
    slow = judge(_row("slow"), "x", "y")  # times out every time
    assert not slow.ok and slow.error == "timed out after 0.4s" and slow.calls == 2
    assert len(server.arrivals["slow"]) == 2
    assert 0.8 < slow.seconds < 2.0  # two timeouts and one backoff, not the stand-in's full second twice


def test_llm_judge_connection_refused_is_a_recorded_failure(key):
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = _judge(f"http://127.0.0.1:{port}/v1", retries=0)
    judge.check([])  # not a key or model problem: left to the judgements
    out = judge(_row("normal"), "x", "y")
    assert not out.ok and out.error.startswith("connection failed") and out.calls == 1


def test_concurrency_is_bounded_by_the_arena_and_by_the_client_pool(judge_server, key):
    server, url = judge_server
    prompts = [_row("hold", i) for i in range(6)]
    answers = [{"model": m, "prompt_id": p["id"], "answer": f"{m} says {i}", "answer_chars": 8, "answer_tokens": 3}
               for m in ("x", "y") for i, p in enumerate(prompts)]
    judged = judge_battles(_judge(url, timeout_s=5, concurrency=3), prompts, answers, [("x", "y")])
    assert judged.stats["judgements"] == 12 and judged.stats["judgements_failed"] == 0
    assert server.max_in_flight == 3  # the arena's threads: in parallel, never more than the judge's concurrency
    assert len(server.connections) <= 3

    server.max_in_flight, server.connections = 0, set()
    judge = _judge(url, timeout_s=5, concurrency=2)
    with ThreadPoolExecutor(max_workers=6) as pool:  # more callers than the judge allows: its pool holds them
        results = list(pool.map(lambda i: judge(_row("hold", i), "x", "y"), range(6)))
    assert all(r.ok for r in results)
    assert server.max_in_flight == 2 and len(server.connections) == 2


def test_rejected_key_and_unknown_model_are_one_line_errors_up_front(judge_server, monkeypatch):
    server, url = judge_server
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    judge = _judge(url)
    with pytest.raises(HarnessError, match=rf"^the llm judge's endpoint {url} rejected the API key \(HTTP 401 "
                                           rf"Unauthorized\): check the API key in \${KEY_ENV} "):
        judge.check([])
    with pytest.raises(HarnessError, match="rejected the API key"):  # a key revoked mid-arena ends it the same way
        judge(_row("normal"), "x", "y")
    assert len(server.requests) == 2  # no retries on 401
    monkeypatch.setenv(KEY_ENV, SECRET)
    with pytest.raises(HarnessError, match=r"has no model 'nope' or no chat-completions route \(HTTP 404 Not Found\)"
                                           r": check arena.llm.model \(--judge-model\) and arena.llm.base_url"):
        LLMJudge(url, "nope", KEY_ENV).check([])
    with pytest.raises(HarnessError, match="has no model 'stand-in-judge' or no chat-completions route"):
        _judge(url.removesuffix("/v1")).check([])  # the base URL without /v1
    _judge(url).check([])  # the right key, model and URL pass


def test_cli_rejected_key_is_a_one_line_error_before_any_model_work(judge_server, tiny_checkpoint, tmp_path,
                                                                    monkeypatch, capsys):
    server, url = judge_server
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    results = tmp_path / "results"
    code = main(["arena", "--models", f"a={tiny_checkpoint}", f"b={tiny_checkpoint}", "--judge", "llm",
                 "--judge-base-url", url, "--judge-model", MODEL, "--judge-api-key-env", KEY_ENV,
                 "--results", str(results)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"harness: error: the llm judge's endpoint {url} rejected the API key (HTTP 401")
    assert KEY_ENV in err and "sk-wrong" not in err
    assert len(server.requests) == 1  # found once, by the check, not once per battle
    assert not (results / "cache" / "arena" / "answers").exists()  # before any answer was generated
    from harness.tracking import store

    client = store.client(store.tracking_uri(results))
    exp = client.get_experiment_by_name("harness")
    assert exp is None or not client.search_runs([exp.experiment_id])  # no MLflow run started, none left RUNNING


def test_llm_judge_needs_an_endpoint_and_a_key(monkeypatch):
    with pytest.raises(HarnessError, match="needs an endpoint"):
        build_judge(ArenaConfig(judge="llm"))
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(HarnessError, match="NO_SUCH_KEY_VAR"):
        build_judge(ArenaConfig(judge="llm", llm=LLMJudgeConfig(base_url="http://127.0.0.1:9/v1", model="m",
                                                                api_key_env="NO_SUCH_KEY_VAR")))
    monkeypatch.setenv("SOME_KEY_VAR", "k")
    with pytest.raises(HarnessError, match=r"^config key arena.llm.base_url: 'http://127.0.0.1:9/v1' carries a "
                                           r"user:password") as err:  # httpx2 logs the URL of every request
        LLMJudge("http://u:pw-secret@127.0.0.1:9/v1", "m", "SOME_KEY_VAR")
    assert "pw-secret" not in str(err.value)


def test_removed_backoff_key_says_why(tmp_path, capsys):
    with pytest.raises(HarnessError, match=r"^config key arena.llm.backoff_s was removed: the judge's client \(openai\) "
                                           r"backs off on its own.*Retry-After.*; delete it from the config$"):
        load_config(overrides=["arena.llm.backoff_s=1.0"])
    old = tmp_path / "old.yaml"
    old.write_text("arena:\n  llm:\n    retries: 2\n    backoff_s: 0.5\n")
    code = main(["arena", "--models", "a=x", "b=y", "--config", str(old), "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "arena.llm.backoff_s was removed" in err


def test_cli_llm_judge_without_endpoint_is_a_one_line_error(tiny_checkpoint, tmp_path, capsys):
    code = main(["arena", "--models", f"a={tiny_checkpoint}", f"b={tiny_checkpoint}", "--judge", "llm",
                 "--results", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("harness: error:") and "judge-base-url" in err and len(err.splitlines()) == 1


@pytest.fixture
def debug_logging(monkeypatch):
    """The openai and HTTP loggers at DEBUG, as ``OPENAI_LOG=debug`` sets openai's (and a user may set httpx2's)."""
    monkeypatch.setenv("OPENAI_LOG", "debug")
    names = ("openai", "httpx2", "httpcore2")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.DEBUG)
    yield
    for n, level in saved.items():
        logging.getLogger(n).setLevel(level)


def test_llm_arena_end_to_end_records_failures_and_never_logs_the_key(judge_server, key, debug_logging,
                                                                        tiny_checkpoint, tmp_path, capsys):
    server, url = judge_server
    prompts = tmp_path / "prompts.jsonl"
    kinds = ("normal", "malformed", "slow", "err500", "err400", "flaky")
    lines = [{"id": f"{m}-{i}", "prompt": f"Say something marker-{m} {i}"} for m in kinds for i in range(2)]
    prompts.write_text("".join(json.dumps(x) + "\n" for x in lines))
    results = tmp_path / "results"
    argv = ["arena", "--models", f"a={tiny_checkpoint}", f"b={tiny_checkpoint}", "--prompts", str(prompts),
            "--judge", "llm", "--judge-base-url", url, "--judge-model", MODEL,
            "--judge-api-key-env", KEY_ENV, "--results", str(results),
            "--set", "arena.llm.timeout_s=0.4", "--set", "arena.llm.retries=1",
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
    # tokens are counted from every answered call: normal, flaky and malformed, 2 prompts each, × 100 prompt tokens
    # (a and b are one checkpoint, so both orders show the same answers: one call per prompt)
    assert metrics["judge/input_tokens"] == 600 and metrics["judge/cost_usd"] == pytest.approx(600 / 1e6)
    assert run.data.params["arena.llm.api_key_env"] == KEY_ENV
    assert "arena.llm.backoff_s" not in run.data.params
    assert run.data.tags["harness.judge"] == f"llm:{MODEL}"

    art = Path(run.info.artifact_uri.removeprefix("file://"))
    battles = [json.loads(x) for x in (art / "arena" / "battles.jsonl").read_text().splitlines()]
    assert {b["prompt_id"].split("-")[0] for b in battles} == {"normal", "flaky"}
    assert all(b["winner"] == "tie" for b in battles)  # the stand-in always prefers position A
    failures = [json.loads(x) for x in (art / "arena" / "failures.jsonl").read_text().splitlines()]
    by_kind = {f["prompt_id"].split("-")[0]: f["error"] for f in failures}
    assert by_kind == {"malformed": "malformed verdict: no [[verdict]] label in the reply",
                       "slow": "timed out after 0.4s", "err500": "HTTP 500 Internal Server Error",
                       "err400": "HTTP 400 Bad Request"}

    # the debug output really went to the results folder's log ...
    logs = list((results / "logs").glob("harness-arena-*.log"))
    assert len(logs) == 1
    log = logs[0].read_text()
    assert "openai._base_client: Sending HTTP Request: POST" in log and "httpx2: HTTP Request: POST" in log
    assert "httpcore2" in log
    # ... and the key is nowhere: params, tags, metrics, artifacts, the database file, the caches, the log
    texts = [json.dumps(run.data.params), json.dumps(run.data.tags), json.dumps(list(metrics))]
    assert not any(SECRET in t for t in texts)
    files = [f for f in results.rglob("*") if f.is_file()]
    assert logs[0] in files and any("cache" in f.parts for f in files)
    for f in files:
        assert SECRET.encode() not in f.read_bytes(), f"API key leaked into {f}"
    assert all(r.get("model") == MODEL for r in server.requests)
