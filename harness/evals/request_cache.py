"""lm-eval's request cache around the suite's model: every answer is kept as soon as its batch is done, so that a
killed lm-eval call resumes mid-call and the requests it had answered are not computed again.

The eval cache (`harness.evals.cache`) keeps a task's output once its lm-eval call ends; a call that shares the
model among several tasks, or one large task (MMLU, a long generation task), can hold minutes to hours of work
before that. The request cache holds that work while it is in progress:

- **Where**: one sqlite db per model and everything else that changes an answer besides the request itself,
  ``<results>/eval_cache/requests/<digest>.db``; the digest covers the checkpoint's content hash, the backend and
  its arguments, batch size, device and the lm-eval, transformers and torch versions (a request is keyed by its type
  and arguments only, so a db is never shared between models or settings).
- **What**: lm-eval's own format (``CachingLM``, what ``simple_evaluate(use_cache=...)`` reads and writes): a
  `SqliteDict` of answers keyed by ``lm_eval.api.model.hash_args(request type, request args)``. Sampled generations
  (``do_sample``) are neither read nor written, as lm-eval does: every sample must be drawn afresh.
- **When**: lm-eval's backends hand each answer to the model's cache hook (``add_partial``). The answers of one
  batch are written together, in one transaction, when the backend starts its next batch (``_model_call`` /
  ``_model_generate``, lm-eval's hf and vllm backends) or returns. A kill therefore keeps whole batches, and since
  lm-eval sorts a call's requests the same way every time, the rerun computes the rest in exactly the batches the
  uninterrupted call would have used: padding and batch composition move log-likelihoods in their last bits
  (measured on CPU), and batch-aligned writes make a resumed call's answers bit-identical to an uninterrupted one. A
  backend without those batch methods (a served model: answers do not depend on local batching) has each answer
  written as it comes.
- **Why not ``use_cache``**: lm-eval's ``CachingLM`` commits every answer on its own (about 0.5 ms each here, twice
  per request: more than a tiny model's forward pass), writes answers one by one (a resumed call then batches
  differently), replaces the model's cache hook (which counts the progress line) and cannot be handed to
  ``simple_evaluate`` as a model (not an ``LM``). The same db and keys are used here, through the lm's own request
  methods.
- **How long**: the db lives while a suite's work is unfinished. Once every task of the suite is in the eval cache
  the db holds nothing that cache lacks, and it is deleted (`discard`): disk use stays at what one interrupted suite
  needs, rather than growing with every checkpoint evaluated (each nightly candidate is a new model). Two evals of
  the same model and settings into one results folder share the db; the first to finish deletes it, and the other
  only loses its own resume point (a db that turns unreadable turns the cache off, see `RequestCache`).

`RequestCache.answering` also counts every request on the eval's progress line: all of a call's requests are its
total, and those answered from the db count as done at once.

`thinking` is the reasoning hook around the same model (`harness.reasoning`): lm-eval's ``generate_until`` answers
reach its filters and metrics as the answer part only, the raw generation and its token counts kept per request for
the per-sample rows (`Thinking.annotate`); with a budget it forces the answer (s1's budget forcing) in two rounds of
plain requests, which the request cache keeps like any other.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from harness.config import EvalConfig

_TYPES = ("loglikelihood", "loglikelihood_rolling", "generate_until")  # lm-eval's request methods
_BATCHES = ("_model_call", "_model_generate")  # one call per batch in lm-eval's hf and vllm backends
_MISSING = object()
_log = logging.getLogger(__name__)


def _folder(results_dir: str | os.PathLike) -> Path:
    return Path(results_dir) / "eval_cache" / "requests"


def db_path(results_dir: str | os.PathLike, *, model_hash: str, lm_name: str, lm_args: dict,
            cfg: EvalConfig) -> Path:
    """Where the request cache of this model, backend and settings lives.

    Args:
        results_dir: the results folder.
        model_hash: the checkpoint's content hash (for a served model: its name and endpoint).
        lm_name: lm-eval's backend name.
        lm_args: the backend's ``model_args`` (the checkpoint's path is left out: its hash stands for it).
        cfg: the eval settings (batch size, device).

    Returns:
        ``<results>/eval_cache/requests/<digest>.db``.
    """
    from importlib import metadata

    from harness.evals import backends, cache

    packages = ["lm_eval", "transformers", "torch"] + (["vllm"] if lm_name == "vllm" else [])
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[package] = None
    material = {
        "model": model_hash,
        "backend": [lm_name, {k: v for k, v in lm_args.items() if k not in {"pretrained", "model"}}],
        "batch_size": cfg.batch_size,
        "device": backends.extra_arguments(cfg)["device"] if lm_name == "hf" else cfg.device,
        "versions": versions,
    }
    return _folder(results_dir) / f"{cache.key(material)[:32]}.db"


def _cacheable(kind: str, args: Any) -> bool:
    """Whether an answer may be reused: not a sampled generation (lm-eval's rule)."""
    return not (kind == "generate_until" and isinstance(args[1], dict) and args[1].get("do_sample", False))


class RequestCache:
    """The request db of one model and settings (`db_path`), opened on first use; with `enabled` false there is
    none and requests are only counted (``eval.cache: false`` recomputes everything).

    Use it as a context manager around a suite's lm-eval calls (it closes the db) and `answering` around each call.
    A db that cannot be opened or written (a read-only or full disk) turns the cache off with a warning in the log:
    it saves work, and never fails an eval.
    """

    def __init__(self, results_dir: str | os.PathLike, *, model_hash: str, lm_name: str, lm_args: dict,
                 cfg: EvalConfig, enabled: bool = True):
        self._where = {"results_dir": results_dir, "model_hash": model_hash, "lm_name": lm_name,
                       "lm_args": lm_args, "cfg": cfg}
        self.enabled = enabled
        self._path: Path | None = None
        self._db = None
        self._opened = False
        self._pending: list[tuple[str, Any]] = []
        self.reused = 0  # requests answered from the db, over all calls

    @property
    def path(self) -> Path:
        """The db's file (computed when first needed: the hf backend's default device asks torch)."""
        if self._path is None:
            self._path = db_path(**self._where)
        return self._path

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self):
        if not self._opened and self.enabled:
            self._opened = True
            try:
                from sqlitedict import SqliteDict

                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = SqliteDict(str(self.path), autocommit=False)
            except Exception as err:  # noqa: BLE001 - sqlite and the file system raise many types
                _log.warning("request cache %s could not be opened (%s); requests are not cached", self.path, err)
        return self._db

    def _off(self, err: BaseException) -> None:
        _log.warning("request cache %s could not be written (%s); requests are no longer cached", self.path, err)
        db, self._db, self._pending = self._db, None, []
        if db is not None:
            try:
                db.close(force=True)
            except Exception as closing:  # noqa: BLE001 - closing a broken db is best effort
                _log.debug("request cache %s: %s while closing", self.path, closing)

    def _flush(self) -> None:
        """Write the answers given since the last flush, in one transaction (all of a batch or none of it)."""
        if not self._pending or self._db is None:
            self._pending.clear()
            return
        try:
            for key, answer in self._pending:
                self._db[key] = answer
            self._db.commit()
        except Exception as err:  # noqa: BLE001 - a full disk, a locked db...
            self._off(err)
        self._pending.clear()

    def _lookup(self, keys: list[str | None]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        try:
            for key in dict.fromkeys(k for k in keys if k is not None):
                answer = self._db.get(key, _MISSING)
                if answer is not _MISSING:
                    found[key] = answer
        except Exception as err:  # noqa: BLE001 - an unreadable db answers nothing
            self._off(err)
            return {}
        return found

    @contextmanager
    def answering(self, lm, bar) -> Iterator[None]:
        """Route `lm`'s requests through the db for one lm-eval call, and count them on the progress `bar`.

        lm-eval's evaluator calls ``lm.loglikelihood(requests)`` (or another request type) once per type with all
        of the call's requests: those the db has are answered from it, the rest go to the model's own method, whose
        answers pass through the cache hook (counted, then written batch by batch). The lm is left as it was.
        """
        from lm_eval.api.model import hash_args

        db = self._open()
        try:  # a db without answers has nothing to look up (~0.2 ms a request)
            has_answers = db is not None and len(db) > 0
        except Exception as err:  # noqa: BLE001 - not a readable sqlite db
            self._off(err)
            has_answers = False
        batched = [n for n in _BATCHES if hasattr(lm, n)]
        cache = self

        class _Hook:
            """The model's cache hook: lm-eval's backends call ``add_partial`` once per answered request."""

            def add_partial(self, kind, args, answer):
                bar.update()
                if cache._db is not None and _cacheable(kind, args):
                    cache._pending.append((hash_args(kind, args), answer))
                    if not batched:
                        cache._flush()

        def request_method(kind, method):
            def answer(requests, *args, **kwargs):
                bar.add(len(requests))
                keys = [hash_args(kind, r.args) if _cacheable(kind, r.args) else None for r in requests]
                found = self._lookup(keys) if has_answers and self._db is not None else {}
                todo = [r for r, k in zip(requests, keys) if k not in found]
                if found:
                    done = len(requests) - len(todo)
                    bar.update(done)
                    self.reused += done
                    _log.info("%s: %d of %d requests answered from the request cache %s", kind, done,
                              len(requests), self.path)
                computed = iter(method(todo, *args, **kwargs) if todo else [])
                self._flush()
                return [found[k] if k in found else next(computed) for k in keys]

            return answer

        def batch_method(method):
            def call(*args, **kwargs):
                self._flush()  # the previous batch is complete: keep it
                return method(*args, **kwargs)

            return call

        names = [n for n in _TYPES if hasattr(lm, n)] + batched
        own = {n: vars(lm)[n] for n in names if n in vars(lm)}  # instance attributes to put back (normally none)
        hook = getattr(lm, "cache_hook", None)
        for name in names:
            method = getattr(lm, name)
            setattr(lm, name, request_method(name, method) if name in _TYPES else batch_method(method))
        lm.cache_hook = _Hook()
        try:
            yield
        finally:
            self._pending.clear()  # a call that failed mid-batch keeps only its whole batches
            for name in names:
                vars(lm).pop(name, None)
            vars(lm).update(own)
            if hook is not None:
                lm.cache_hook = hook
            else:
                vars(lm).pop("cache_hook", None)

    def close(self) -> None:
        """Close the db (answers already written stay)."""
        if self._db is not None:
            try:
                self._db.close()
            except Exception as err:  # noqa: BLE001 - nothing to keep from a db that fails to close
                _log.warning("request cache %s could not be closed (%s)", self.path, err)
            self._db = None

    def discard(self) -> None:
        """Delete the db: every task it served is in the eval cache now, which makes it redundant."""
        self.close()
        folder = _folder(self._where["results_dir"])
        if not self.enabled or not (self._opened or folder.is_dir() and any(folder.glob("*.db"))):
            return  # nothing to delete (and no need to compute the path)
        for path in (self.path, self.path.with_name(self.path.name + "-journal")):
            try:
                path.unlink(missing_ok=True)
            except OSError as err:
                _log.warning("request cache %s could not be deleted (%s)", path, err)


class Thinking:
    """The reasoning hook of one lm-eval call (`thinking`): what each generation request produced.

    Attributes:
        notes: ``json([context, gen_kwargs])`` of a request → its `harness.reasoning.record` (one per answer, in
            order: a task's repeated requests have one each).
    """

    def __init__(self) -> None:
        self.notes: dict[str, list[dict]] = {}

    def annotate(self, output: dict) -> None:
        """Put each generation sample's reasoning record into lm-eval's output (``sample["reasoning"]``), where the
        eval cache keeps it and `harness.reasoning` columns are read from."""
        for samples in output.get("samples", {}).values():
            for sample in samples:
                args = sample.get("arguments") or []
                if not args or len(args[0]) != 2 or not isinstance(args[0][1], dict):
                    continue
                found = self.notes.get(_request_key(args[0]))
                if found:
                    sample["reasoning"] = found[0]


def _request_key(args) -> str:
    return json.dumps([args[0], args[1]], sort_keys=True, default=str)


def _count(lm):
    """Tokens of a text by the lm's own tokenizer (words for a backend without one)."""
    def count(text: str) -> int:
        try:
            return len(lm.tok_encode(text, add_special_tokens=False))
        except Exception:  # noqa: BLE001 - a served backend may have no tokenizer
            return len(text.split())
    return count


@contextmanager
def thinking(lm, delimiters, budget: int | None = None) -> Iterator[Thinking]:
    """Route `lm`'s ``generate_until`` through the reasoning split for one lm-eval call (inside `answering`, so that
    every generation, forced ones too, goes through the request cache).

    Without a budget each request is generated as the task asks and its answer part returned. With `budget`, a
    request is answered in two rounds: the reasoning, at most `budget` new tokens stopping at the end delimiter;
    then, from the prompt, that reasoning and `harness.reasoning.forced` (the end delimiter and the answer lead-in),
    the answer with the task's own generation settings. The lm is left as it was.

    Args:
        lm: lm-eval's model.
        delimiters: the `harness.reasoning.Delimiters`; None: nothing is done.
        budget: thinking budget in tokens, or None.
    """
    from dataclasses import replace as copy

    from harness import reasoning

    hook = Thinking()
    if delimiters is None or not hasattr(lm, "generate_until"):
        yield hook
        return
    own = vars(lm).get("generate_until", _MISSING)
    method = lm.generate_until
    count = _count(lm)

    def keep(args, note) -> str:
        hook.notes.setdefault(_request_key(args), []).append(note)
        return note["answer"]

    def generate_until(requests, *args, **kwargs):
        if budget is None:
            raw = method(requests, *args, **kwargs)
            return [keep(r.args, reasoning.record(text, delimiters, count, opened=reasoning.opens(r.args[0],
                                                                                                   delimiters)))
                    for r, text in zip(requests, raw)]
        thoughts = method([copy(r, arguments=(r.args[0], {**r.args[1], "until": [delimiters.end],
                                                          "max_gen_toks": budget}))
                           for r in requests], *args, **kwargs)
        closing = reasoning.forced(delimiters)
        answers = method([copy(r, arguments=(r.args[0] + thought + closing, r.args[1]))
                          for r, thought in zip(requests, thoughts)], *args, **kwargs)
        out = []
        for r, thought, answer in zip(requests, thoughts, answers):
            opened = reasoning.opens(r.args[0], delimiters)
            out.append(keep(r.args, reasoning.record(thought + closing + answer, delimiters, count, opened=opened,
                                                     forced_at=count(thought) >= budget)))
        return out

    lm.generate_until = generate_until
    try:
        yield hook
    finally:
        if own is _MISSING:
            vars(lm).pop("generate_until", None)
        else:
            vars(lm)["generate_until"] = own
