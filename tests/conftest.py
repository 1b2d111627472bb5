"""Shared fixtures: offline Hugging Face settings, single-threaded torch, a tiny checkpoint and the quick pipeline
built once, and a headless Chromium tab for the browser tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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


@pytest.fixture(scope="session")
def quick_pipeline(tmp_path_factory) -> Path:
    """The results folder of one `harness run --quick` (checkpoints, evals, arena, MLflow store), shared by tests."""
    from harness.cli import main

    results = tmp_path_factory.mktemp("pipeline")
    assert main(["run", "--quick", "--results", str(results), "--set", "arena.bootstrap=100"]) == 0
    return results


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
