"""Eval during training: with ``eval.during_training: {every: N, suite: S}``, a TRL stage (sft, dpo, rlvr) saves its
model every N global steps and when training ends, scores it on suite S through `harness.evals.evaluate` (the same
cached, recorded eval as every other), and logs ``eval/<skill>/score`` (``overall`` too) at that step on the
stage's own train run, so that the MLflow UI charts eval against step beside the loss.

Each saved model is a Hugging Face folder ``<results>/checkpoints/<run name>/<stage>-steps/checkpoint-<step>``
(weights, config, tokenizer and ``trainer_state.json``, written through a temporary name), and its eval run is
nested under the stage's train run, tagged with the step. The random states (Python, numpy, torch) are kept across
each eval, so a stage trains exactly as it would without it.

The runner opens `during` around a stage (it knows the stage's run); `harness.train.common.train_and_save` adds
the `callbacks()` in force to the trainer, so the stage modules need not know about it. The pretraining stage
(a plain torch loop) has no trainer and is not evaluated during training.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from transformers import TrainerCallback

from harness.tracking import schema

if TYPE_CHECKING:
    from harness.config import Config
    from harness.tracking.store import Run


@dataclass(frozen=True)
class _Scope:
    """What the callback needs of the stage it runs in."""

    run: "Run"  # the stage's train run: the eval runs' parent, and where eval/<skill>/score goes by step
    cfg: "Config"
    every: int
    suite: str
    folder: Path  # where checkpoint-<step> folders are written


_scope: ContextVar[_Scope | None] = ContextVar("harness_eval_during_training", default=None)


@contextmanager
def during(run: "Run", cfg: "Config", stage: str, ckpt_root: Path) -> Iterator[None]:
    """While the block trains `stage` under its train run `run`, `callbacks()` returns the eval callback (when
    ``eval.during_training`` is set; else nothing changes)."""
    settings = cfg.eval.during_training
    if settings is None:
        yield
        return
    token = _scope.set(_Scope(run, cfg, int(settings["every"]), settings.get("suite") or cfg.eval.suite,
                              Path(ckpt_root) / f"{stage}-steps"))
    try:
        yield
    finally:
        _scope.reset(token)


def callbacks() -> list[TrainerCallback]:
    """The trainer callbacks that eval during training needs in the stage now training (none outside `during`)."""
    scope = _scope.get()
    return [] if scope is None else [EvalCallback(scope)]


class EvalCallback(TrainerCallback):
    """Every `every` global steps, and at the end of training, save the model and evaluate it (see the module
    docstring)."""

    def __init__(self, scope: _Scope):
        self.scope = scope
        self.done: set[int] = set()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.scope.every == 0:
            self._evaluate(state, kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        if state.global_step > 0 and state.global_step not in self.done:
            self._evaluate(state, kwargs)

    def _evaluate(self, state, kwargs: dict) -> None:
        from harness.evals import evaluate

        scope, step = self.scope, int(state.global_step)
        folder = _save(scope.folder / f"checkpoint-{step}", kwargs["model"], kwargs.get("processing_class"), state)
        with _random_states_kept():
            result = evaluate(str(folder), scope.suite, cfg=scope.cfg.eval, results_dir=scope.cfg.run.results,
                              parent=scope.run, experiment=scope.cfg.run.experiment,
                              trust_remote_code=scope.cfg.model.trust_remote_code, tags=schema.tags(step=step))
        scope.run.log_metrics({schema.eval_step_metric(row.skill): row.value for row in result.skills.itertuples()},
                              step=step)
        self.done.add(step)


def _save(folder: Path, model, tokenizer, state) -> Path:
    """The model as a Hugging Face checkpoint folder (as the Trainer saves one, without optimizer state), written
    through a temporary name so that no half-written folder is ever evaluated; `folder`."""
    import shutil

    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    getattr(model, "module", model).save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    state.save_to_json(str(tmp / "trainer_state.json"))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


@contextmanager
def _random_states_kept() -> Iterator[None]:
    """lm-eval seeds Python's, numpy's and torch's generators; put them back as training left them."""
    import random

    import numpy as np
    import torch

    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])
