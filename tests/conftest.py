"""Shared fixtures: offline Hugging Face settings, single-threaded torch, a tiny checkpoint and the quick pipeline
built once, and a headless Chromium tab for the browser tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def arena_hard(tmp_path) -> Path:
    """A copy of the real Arena-Hard battle file (shared/data/arena); skips where the shared data is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    dst = tmp_path / "arena_hard_battles.jsonl"
    shutil.copy(SHARED_DATA / "arena" / "arena_hard_battles.jsonl", dst)
    return dst


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny Llama checkpoint with the harness tokenizer and chat template (built in ~2 s)."""
    import torch

    from harness.data import skills
    from harness.models import tiny

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny") / "base"
    tok = tiny.build_tokenizer(skills.pretraining_corpus(2000, seed=0), vocab_size=384)
    model = tiny.build_model(tok, hidden_size=32, layers=2, heads=2, seed=0)
    tiny.save(model, tok, out)
    return out


def harness_process(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m harness.cli ARGS` as a real process (its own descriptors; stdout and stderr as pipes), offline,
    with no tracking URI from the environment (it uses its results folder's store)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          check=False, cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def quick_process(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One `harness run --quick` as a real process, started in a folder that is not a git checkout: its results
    folder (checkpoints, evals, arena, MLflow store) and the finished process (its terminal), shared by the tests
    that read a pipeline's record and by those of its terminal (tests/test_console.py)."""
    where = tmp_path_factory.mktemp("pipeline")
    done = harness_process("run", "--quick", "--results", str(where / "results"), "--set", "arena.bootstrap=100",
                           cwd=where)
    assert done.returncode == 0, done.stderr[-3000:]
    return where / "results", done


@pytest.fixture(scope="session")
def quick_pipeline(quick_process) -> Path:
    """The results folder of the shared `harness run --quick`."""
    return quick_process[0]


@pytest.fixture()
def no_model_work(monkeypatch):
    """Loading a model for lm-eval or the arena, or starting the pipeline's training, fails the test: for inputs
    that must be refused before any model work."""
    from harness import runner
    from harness.evals import backends
    from harness.models import load

    def reached(*args, **kwargs):
        pytest.fail("model work started for an input that must be refused first")

    monkeypatch.setattr(backends, "create", reached)
    monkeypatch.setattr(load, "load", reached)
    monkeypatch.setattr(runner, "run_pipeline", reached)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary for the browser tests (installed with apt-get when missing; skips if that fails)."""
    from browser import chromium_binary

    return chromium_binary()


@pytest.fixture()
def page(chromium, tmp_path):
    """A headless Chromium tab driven over the DevTools protocol (`browser.Page`), closed after the test."""
    from browser import Page

    p = Page(chromium, tmp_path / "profile")
    yield p
    p.close()


# The team tracking server (tests/postgres.py) and the two stores the team tests run on: "sqlite" (the results
# folder's own mlflow.db) and "postgres" (the server). Every command on either runs with secrets in its environment
# that must never reach the store.
SECRETS = {"OPENAI_API_KEY": "sk-test-4c0ffee5ecret", "HF_TOKEN": "hf_test_7d3adbeefsecret"}
STORES = ("sqlite", "postgres")
# `harness run --quick`, smaller still: every stage, eval, arena and registration, in about 45 s.
SMALL_PIPELINE = ["--quick", "--set", "model.hidden_size=32", "--set", "model.layers=2", "--set", "model.heads=2",
                  "--set", "pretrain.steps=20", "--set", "pretrain.corpus_lines=1000",
                  "--set", "sft.examples_per_skill=30", "--set", "dpo.pairs=32", "--set", "rlvr.prompts=8",
                  "--set", "rlvr.batch_size=8", "--set", "eval.limit=5", "--set", "arena.prompts=4",
                  "--set", "arena.bootstrap=20"]


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1 (installed with apt-get when missing), stopped by its pid."""
    from postgres import postgres_cluster

    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def team_server(postgres, tmp_path_factory):
    """The README's team tracking server on `postgres`: proxied artifacts, basic auth, a user to work as
    (`postgres.TeamServer`); stopped by its pid."""
    from postgres import team_server as start

    with start(postgres, "mlflow", tmp_path_factory.mktemp("team-server")) as server:
        yield server


@pytest.fixture(scope="session")
def store_env(request):
    """`store_env(name)`: the environment a command on the store `name` runs in (tracking URI and credentials for
    the team server; none for sqlite), plus `SECRETS` and a tracking password."""
    def env(name: str) -> dict[str, str | None]:
        if name == "postgres":
            return {**SECRETS, **request.getfixturevalue("team_server").env()}
        return {**SECRETS, "MLFLOW_TRACKING_URI": None, "MLFLOW_TRACKING_PASSWORD": "unused-pw-secret-0a9e"}

    return env


def set_env(mp: pytest.MonkeyPatch, env: dict[str, str | None]) -> None:
    for key, value in env.items():
        if value is None:
            mp.delenv(key, raising=False)
        else:
            mp.setenv(key, value)


@pytest.fixture(params=STORES)
def tracking(request, store_env, monkeypatch) -> str:
    """Each store in turn ("sqlite", "postgres"), its environment set for the test."""
    set_env(monkeypatch, store_env(request.param))
    return request.param


@pytest.fixture(scope="session")
def store_pipeline(store_env, tmp_path_factory):
    """`store_pipeline(name)`: the results folder of one `SMALL_PIPELINE` run recorded in the store `name` (run once
    per session; its checkpoints are registered versions of harness-embedded there)."""
    from harness.cli import main

    done: dict[str, Path] = {}

    def pipeline(name: str) -> Path:
        if name not in done:
            results = tmp_path_factory.mktemp(f"pipeline-{name}")
            with pytest.MonkeyPatch.context() as mp:
                set_env(mp, store_env(name))
                assert main(["run", *SMALL_PIPELINE, "--results", str(results)]) == 0
            done[name] = results
        return done[name]

    return pipeline


# Under pytest-xdist (`pytest -n 2`), a test file runs whole on one worker (its module fixtures are built once), and
# the files that share an expensive session fixture run on one worker together, so that it is built once too: the
# quick pipeline, and the small pipeline in each store with the team server.
_SHARED = {"quick_process": "quick-pipeline", "store_pipeline": "stores"}  # quick_pipeline is quick_process's


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks into the test ids
def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):  # not an xdist worker
        return
    groups: dict[str, str] = {}
    for item in items:
        for fixture, group in _SHARED.items():
            if fixture in item.fixturenames:
                groups.setdefault(item.nodeid.split("::")[0], group)
    for item in items:
        path = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(groups.get(path, path)))


@pytest.fixture(autouse=True)
def _tracking_uri_restored():
    """Each test starts with the MLFLOW_TRACKING_URI the session started with, whatever the one before did (e.g.
    `mlflow.set_tracking_uri`, which also sets the variable): a leak would send later tests' reads to its store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if os.environ.get("MLFLOW_TRACKING_URI") != before:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
