"""Verifiers for real tasks: normalised exact match, math answer equivalence, IFEval's instruction checks, and a
user's own ``module:function``. Each is one function, used both as a GRPO reward and as an lm-eval metric.

Every verifier follows TRL's reward contract, ``(completions, **dataset_columns) -> list[float | None]``: one
score in [0, 1] per completion, or None for a row the verifier does not apply to (no gold answer, no instructions),
which TRL's GRPOTrainer leaves out of the reward. The eval side grades one document with the same function:
`score(verifier, doc, completion)`, which the ``process_results`` hooks of `harness.evals.lm_tasks` call.

- ``exact_match``: column ``answer`` (a string, or a list of acceptable answers). The answer part of the
  completion and of the gold (what follows the last ``####``, GSM8K's marker, else the whole text) are equal after
  `normalise` (lowercase, thousands separators, punctuation and articles dropped, whitespace collapsed).
- ``math``: column ``answer``; equivalence by Hugging Face's `math-verify` (``\\boxed{1/2}`` equals ``0.5``; a gold
  ``... #### 72`` is read as 72), with its signal-based timeouts on the main thread (none elsewhere: alarms only
  work there).
- ``ifeval``: columns ``instruction_id_list`` and ``kwargs`` as IFEval's rows have them (and ``prompt``, or TRL's
  ``prompts``, for the instructions that quote it); 1.0 when every instruction is followed, checked by lm-eval's own
  IFEval code and instruction registry (``lm_eval.tasks.ifeval``): lm-eval's ``prompt_level_strict_acc``.
  Two things there are random, so they are pinned for one completion to get one reward: langdetect, which the case
  and language checks call (``DetectorFactory.seed = 0`` unless already set), and an instruction argument a row
  leaves unusable, which lm-eval draws from Python's ``random`` (IFEval's rows 1122 and 1129 count the "letters"
  ``#`` and ``!``, so lm-eval checks a random letter): drawn here with a seed taken from the row, the global
  random state restored after.
- ``module:function`` (or ``path/to/file.py:function``): the user's own function, checked when it is resolved.

    from harness.data.task_verifiers import verifier_by_name
    reward = verifier_by_name("math")
    reward(["... so she makes \\\\boxed{18} dollars."], answer=["... #### 18"])   # [1.0]

math-verify and lm-eval load on first use, so resolving a verifier stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import random
import re
import sys
import threading
import unicodedata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from harness.errors import HarnessError, first_line

Verifier = Callable[..., list]  # (completions, **dataset_columns) -> list[float | None]

_ARTICLES = {"a", "an", "the"}
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PUNCT = re.compile(r"[^\w\s.]|_|(?<!\d)\.|\.(?!\d)")  # every punctuation mark except a decimal point
_TIMEOUT_S = 5


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or a conversational message list (the last message's content)."""
    if isinstance(completion, list):
        completion = completion[-1] if completion else ""
    if isinstance(completion, Mapping):
        completion = completion.get("content", "")
    return "" if completion is None else str(completion)


def answer_part(text: str) -> str:
    """What follows the last ``####`` (GSM8K's answer marker), else the whole text, stripped."""
    return text.rsplit("####", 1)[1].strip() if "####" in text else text.strip()


def normalise(text: str) -> str:
    """Text compared by exact match: NFKC, lowercase, thousands separators and punctuation (but a decimal point)
    removed, articles dropped, whitespace collapsed: ``"The $1,000."`` → ``"1000"``."""
    text = _THOUSANDS.sub("", unicodedata.normalize("NFKC", text).lower())
    return " ".join(w for w in _PUNCT.sub(" ", text).split() if w not in _ARTICLES)


def _column(columns: Mapping[str, Any], name: str, verifier: str, n: int) -> list:
    if name not in columns:
        raise HarnessError(f"verifier {verifier!r} needs the dataset column {name!r}; the rows have "
                           f"{', '.join(sorted(columns)) or 'no columns'}")
    values = columns[name]
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise HarnessError(f"verifier {verifier!r}: column {name!r} must hold one value per completion ({n})")
    return list(values)


def exact_match(completions: list[Any], **columns: Any) -> list[float | None]:
    """TRL reward / eval metric: 1.0 when the completion's answer part equals a gold answer after `normalise`.

    Args:
        completions: generated completions (strings or message lists).
        **columns: the dataset's columns; ``answer`` (a string, or a list of acceptable strings) is used.

    Returns:
        1.0 or 0.0 per completion; None where the row has no answer.
    """
    golds = _column(columns, "answer", "exact_match", len(completions))
    out: list[float | None] = []
    for completion, gold in zip(completions, golds):
        if gold is None:
            out.append(None)
            continue
        options = gold if isinstance(gold, (list, tuple)) else [gold]
        said = normalise(answer_part(completion_text(completion)))
        out.append(float(any(said == normalise(answer_part(str(g))) for g in options)))
    return out


def _timeout() -> int | None:
    return _TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parse_gold(gold: str, timeout: int | None) -> list:
    from math_verify import parse

    gold = answer_part(gold)
    if "$" not in gold and "\\boxed" not in gold:  # a bare answer ("72", "x^2+1") reads as the math it is
        parsed = parse(f"${gold}$", parsing_timeout=timeout)
        if parsed:
            return parsed
    return parse(gold, parsing_timeout=timeout)


def math(completions: list[Any], **columns: Any) -> list[float | None]:
    """TRL reward / eval metric: 1.0 when the completion's final answer is mathematically equal to the gold
    (Hugging Face math-verify: LaTeX and plain expressions, ``\\boxed{}``, fractions, decimals, sets, intervals).

    Args:
        completions: generated completions (strings or message lists).
        **columns: the dataset's columns; ``answer`` is the gold (``"0.5"``, ``"\\frac{1}{2}"``, GSM8K's
            ``"... #### 72"``).

    Returns:
        1.0 or 0.0 per completion; None where the row has no answer.
    """
    from math_verify import parse, verify

    golds = _column(columns, "answer", "math", len(completions))
    timeout = _timeout()
    out: list[float | None] = []
    for completion, gold in zip(completions, golds):
        if gold is None:
            out.append(None)
            continue
        text = completion_text(completion)
        target = parse(answer_part(text) if "####" in text else text, parsing_timeout=timeout)
        out.append(float(bool(target) and verify(_parse_gold(str(gold), timeout), target, timeout_seconds=timeout)))
    return out


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):  # a conversational prompt: the last user turn holds the instructions
        users = [m.get("content", "") for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
        return str(users[-1]) if users else ""
    return "" if prompt is None else str(prompt)


def ifeval(completions: list[Any], **columns: Any) -> list[float | None]:
    """TRL reward / eval metric: 1.0 when the completion follows every instruction of its row, as lm-eval's IFEval
    checks them strictly (its ``prompt_level_strict_acc``).

    Args:
        completions: generated completions (strings or message lists).
        **columns: the dataset's columns: ``instruction_id_list`` (IFEval ids such as
            ``"punctuation:no_comma"``), ``kwargs`` (one mapping per instruction, None values ignored as lm-eval
            does) and ``prompt`` or TRL's ``prompts``.

    Returns:
        1.0 or 0.0 per completion; None where the row has no instructions.
    """
    n = len(completions)
    ids = _column(columns, "instruction_id_list", "ifeval", n)
    kwargs = _column(columns, "kwargs", "ifeval", n)
    prompts = columns.get("prompt", columns.get("prompts")) or [""] * n
    from harness.evals import offline

    offline.punkt_tab()  # before lm-eval's IFEval module imports: it would download it
    import langdetect

    if langdetect.DetectorFactory.seed is None:  # the language checks sample: unseeded, one answer scores 0 or 1
        langdetect.DetectorFactory.seed = 0
    from lm_eval.tasks.ifeval import instructions_registry
    from lm_eval.tasks.ifeval.utils import InputExample, test_instruction_following_strict

    out: list[float | None] = []
    for i, completion in enumerate(completions):
        if not ids[i]:
            out.append(None)
            continue
        unknown = [k for k in ids[i] if k not in instructions_registry.INSTRUCTION_DICT]
        if unknown:
            raise HarnessError(f"verifier 'ifeval': unknown instruction {unknown[0]!r} (valid: lm-eval's IFEval "
                               f"instructions, e.g. {', '.join(sorted(instructions_registry.INSTRUCTION_DICT)[:3])})")
        if len(kwargs[i] or []) != len(ids[i]):
            raise HarnessError(f"verifier 'ifeval': row {i} has {len(ids[i])} instructions but "
                               f"{len(kwargs[i] or [])} kwargs (one mapping per instruction)")
        example = InputExample(key=i, instruction_id_list=list(ids[i]), prompt=_prompt_text(prompts[i]),
                               kwargs=[dict(k or {}) for k in kwargs[i]])
        state = random.getstate()  # lm-eval draws what a row leaves unset (a letter_frequency "letter" of "!")
        random.seed(json.dumps([example.instruction_id_list, example.kwargs], sort_keys=True, default=str))
        try:
            followed = test_instruction_following_strict(example, completion_text(completion))
        finally:
            random.setstate(state)
        out.append(float(followed.follow_all_instructions))
    return out


VERIFIERS: dict[str, Verifier] = {"exact_match": exact_match, "math": math, "ifeval": ifeval}
_VALID = f"valid: {', '.join(VERIFIERS)}, or module:function (a module on the Python path or a .py file)"


def _load_module(module: str):
    if module.endswith(".py") or "/" in module:
        path = Path(module).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no file {path}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(path.stem, loaded)
        spec.loader.exec_module(loaded)
        return loaded
    return importlib.import_module(module)


def _takes_reward_arguments(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return True
    return any(p.kind is p.VAR_KEYWORD for p in params)


def verifier_by_name(spec: str, where: str = "verifier") -> Verifier:
    """The verifier a name or ``module:function`` spec names, checked before any training or eval work.

    Args:
        spec: ``exact_match``, ``math``, ``ifeval``, or ``module:function`` / ``path/to/file.py:function``.
        where: what the spec is, for the error (e.g. ``"config key rlvr.verifier"``).

    Returns:
        The function, in TRL's reward contract.

    Raises:
        HarnessError: an unknown name, a module that does not import, a missing attribute, something that is not
            callable or does not take TRL's reward arguments (``completions`` and ``**kwargs``).
    """
    if spec in VERIFIERS:
        return VERIFIERS[spec]
    module, sep, name = str(spec).rpartition(":")
    if not sep or not module or not name.isidentifier():
        raise HarnessError(f"{where} {spec!r} is not a verifier ({_VALID})")
    try:
        loaded = _load_module(module)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - the user's module may raise anything while importing
        raise HarnessError(f"{where} {spec!r}: module {module!r} does not import ({type(err).__name__}: "
                           f"{first_line(err)}; {_VALID})") from None
    fn = getattr(loaded, name, None)
    origin = getattr(loaded, "__file__", module)
    if fn is None:
        raise HarnessError(f"{where} {spec!r}: {origin} has no {name!r} ({_VALID})")
    if not callable(fn):
        raise HarnessError(f"{where} {spec!r}: {module}.{name} in {origin} is a {type(fn).__name__}, not a "
                           f"function ({_VALID})")
    if not _takes_reward_arguments(fn):
        raise HarnessError(f"{where} {spec!r}: {module}.{name}{inspect.signature(fn)} does not take TRL's reward "
                           f"arguments; define it as def {name}(completions, **dataset_columns) -> "
                           "list[float | None]")
    return fn


def score(verifier: Verifier, doc: Mapping[str, Any], completion: Any) -> float | None:
    """Grade one document with a verifier, as an eval metric: the verifier called on a batch of one.

    Args:
        verifier: a function in TRL's reward contract.
        doc: the task's document (its fields are the dataset columns).
        completion: the model's answer.

    Returns:
        The verifier's score, or None where it does not apply.
    """
    columns = {k: [v] for k, v in doc.items() if k != "completions"}
    out = verifier([completion], **columns)
    if not isinstance(out, Sequence) or len(out) != 1 or not (out[0] is None or isinstance(out[0], (int, float))):
        raise HarnessError(f"verifier {getattr(verifier, '__name__', verifier)!r} returned {out!r} for one "
                           "completion (expected a list of one float or None)")
    return None if out[0] is None else float(out[0])
