"""The request cache (`harness.evals.request_cache`) on lm-eval's real hf model and the tiny checkpoint: a call
stopped mid-batch resumes with answers bit-identical to an uninterrupted call, cached requests count on the
progress line, sampled generations are never reused, a db is keyed by model and settings, a broken db never fails
an eval, and `evaluate` deletes the db once every task is cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import EvalConfig
from harness.evals import evaluate, request_cache

BATCH = 8


class Bar:
    """The progress line's counting interface (`harness.console.Progress`): total and done."""

    def __init__(self):
        self.total = self.count = 0

    def add(self, n):
        self.total += n

    def update(self, n=1, **values):
        self.count += n


@pytest.fixture(scope="module")
def lm(tiny_checkpoint):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(tiny_checkpoint), batch_size=BATCH, device="cpu")


@pytest.fixture(scope="module")
def requests(lm):
    """240 log-likelihood requests of varied lengths (so batches pad differently), as lm-eval's tasks build them."""
    from lm_eval.api.instance import Instance

    from harness.resources import resource_path

    path = resource_path("suites") / "tiny" / "knowledge" / "eval.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()[:60]]
    def prompt(i: int, row: dict) -> str:
        return lm.apply_chat_template([{"role": "user", "content": row["prompt"] + " and more words" * (i % 5)}])

    return [Instance("loglikelihood", {}, (prompt(i, row), " " + choice), i)
            for i, row in enumerate(rows) for choice in row["choices"]]


def _cache(results: Path, **settings) -> request_cache.RequestCache:
    return request_cache.RequestCache(results, model_hash="tiny", lm_name="hf", lm_args={},
                                      cfg=EvalConfig(device="cpu", batch_size=BATCH, **settings))


@pytest.mark.parametrize("stop_after", [13, 101])
def test_a_call_stopped_mid_batch_resumes_bit_identical(lm, requests, tmp_path, monkeypatch, stop_after):
    """Padding and batch composition move log-likelihoods in their last bits (measured here: answers written one by
    one, as lm-eval's CachingLM does, differ after a resume at these points); whole batches kept do not."""
    from lm_eval.models.huggingface import HFLM

    uninterrupted = lm.loglikelihood(requests)
    real = HFLM._select_cont_toks  # called once per answered row of a batch, before its answers are handed out
    rows = []

    def stop(self, *args, **kwargs):
        rows.append(1)
        if len(rows) == stop_after:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    cache = _cache(tmp_path)
    monkeypatch.setattr(HFLM, "_select_cont_toks", stop)
    with pytest.raises(KeyboardInterrupt), cache.answering(lm, Bar()):
        lm.loglikelihood(requests)
    monkeypatch.setattr(HFLM, "_select_cont_toks", real)
    assert "loglikelihood" not in vars(lm) and type(lm.cache_hook).__name__ == "CacheHook"  # the lm as it was

    computed = []
    real_tokens = HFLM._loglikelihood_tokens
    monkeypatch.setattr(HFLM, "_loglikelihood_tokens",
                        lambda self, reqs, **kw: computed.extend(reqs) or real_tokens(self, reqs, **kw))
    bar = Bar()
    with cache.answering(lm, bar):
        resumed = lm.loglikelihood(requests)
    assert resumed == uninterrupted  # exact floats, not approx
    assert 0 < cache.reused < len(requests) and len(computed) == len(requests) - cache.reused
    assert bar.total == bar.count == len(requests)  # the requests answered from the db count as done
    cache.close()


def test_every_request_counts_and_a_second_pass_computes_nothing(lm, requests, tmp_path, monkeypatch):
    from lm_eval.models.huggingface import HFLM

    cache = _cache(tmp_path)
    first, again = Bar(), Bar()
    with cache.answering(lm, first):
        answers = lm.loglikelihood(requests[:40])
    assert first.total == first.count == 40 and cache.reused == 0
    monkeypatch.setattr(HFLM, "_loglikelihood_tokens", lambda *a, **k: pytest.fail("all 40 are in the db"))
    with cache.answering(lm, again):
        assert lm.loglikelihood(requests[:40]) == answers
    assert again.total == again.count == 40 and cache.reused == 40
    cache.discard()
    assert not cache.path.exists() and cache.path.parent.is_dir()


def test_sampled_generations_are_never_reused(lm, tmp_path):
    from lm_eval.api.instance import Instance

    prompt = lm.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}])
    greedy = Instance("generate_until", {}, (prompt, {"until": ["<|end|>"], "do_sample": False, "max_gen_toks": 6}), 0)
    sampled = Instance("generate_until", {}, (prompt, {"until": ["<|end|>"], "do_sample": True, "temperature": 1.0,
                                                       "max_gen_toks": 6}), 1)
    cache = _cache(tmp_path)
    with cache.answering(lm, Bar()):
        lm.generate_until([greedy, sampled])
    cache.close()
    from lm_eval.api.model import hash_args
    from sqlitedict import SqliteDict

    with SqliteDict(str(cache.path), flag="r") as db:
        assert list(db.keys()) == [hash_args("generate_until", greedy.args)]


def test_a_db_is_keyed_by_model_and_settings(tmp_path):
    def path(**changes):
        where = {"model_hash": "abc", "lm_name": "hf", "lm_args": {"pretrained": "/a", "dtype": "float32"},
                 "cfg": EvalConfig(device="cpu")} | changes
        return request_cache.db_path(tmp_path, **where)

    base = path()
    assert base.parent == tmp_path / "eval_cache" / "requests" and base.suffix == ".db"
    assert path(lm_args={"pretrained": "/elsewhere", "dtype": "float32"}) == base  # same bytes: the hash says so
    others = [path(model_hash="abd"), path(lm_name="vllm"), path(lm_args={"pretrained": "/a", "dtype": "bfloat16"}),
              path(cfg=EvalConfig(device="cpu", batch_size=32)), path(cfg=EvalConfig(device="cuda"))]
    assert len({base, *others}) == 1 + len(others)


def test_a_db_that_cannot_be_opened_never_fails_an_eval(lm, requests, tmp_path, caplog):
    expected = lm.loglikelihood(requests[:8])
    (tmp_path / "eval_cache").write_text("a file where the cache folder belongs")
    cache = _cache(tmp_path)
    bar = Bar()
    with cache.answering(lm, bar):
        assert lm.loglikelihood(requests[:8]) == expected
    assert bar.total == bar.count == 8
    assert "could not be opened" in caplog.text and "requests are not cached" in caplog.text
    cache.discard()  # nothing to delete, and no error


def test_evaluate_keeps_the_db_while_unfinished_and_deletes_it_after(tiny_checkpoint, tmp_path, monkeypatch):
    from lm_eval.models.huggingface import HFLM

    results = tmp_path / "results"
    cfg = EvalConfig(limit=4, device="cpu", batch_size=4)
    real = HFLM._select_cont_toks
    rows = []

    def interrupt(self, *args, **kwargs):
        rows.append(1)
        if len(rows) == 10:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HFLM, "_select_cont_toks", interrupt)
    with pytest.raises(KeyboardInterrupt):
        evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results)
    monkeypatch.setattr(HFLM, "_select_cont_toks", real)
    (db,) = (results / "eval_cache" / "requests").glob("*.db")
    assert not list((results / "eval_cache").glob("*.json"))  # the one shared call did not finish

    computed = {}

    def counting(name):
        real_method = getattr(HFLM, name)

        def counted(self, reqs):
            computed[name] = computed.get(name, 0) + len(reqs)
            return real_method(self, reqs)

        return counted

    for name in ("generate_until", "loglikelihood"):
        monkeypatch.setattr(HFLM, name, counting(name))
    resumed = evaluate(str(tiny_checkpoint), "tiny", cfg=cfg, results_dir=results)
    assert not db.exists() and len(list((results / "eval_cache").glob("*.json"))) == 7
    assert resumed.cached == []  # no task was in the eval cache; their requests were in the request db
    assert "generate_until" not in computed and 0 < computed["loglikelihood"] < 2 * 4 * 4

    fresh = evaluate(str(tiny_checkpoint), "tiny", cfg=EvalConfig(limit=4, device="cpu", batch_size=4, cache=False),
                     results_dir=tmp_path / "uncached")
    assert not (tmp_path / "uncached" / "eval_cache" / "requests").exists()  # eval.cache false: no request db
    assert fresh.scores.equals(resumed.scores)
