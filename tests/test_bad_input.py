"""Every bad input is one line on stderr and exit code 2, before any model work: one row per input, through the real
command line in-process (`harness.cli.main`).

A row is the command's arguments, the files it reads (written fresh under the test's folder; bytes for malformed
encodings), the exit code and a fragment of the one line. `{tmp}` in an argument is the test's folder, `{ckpt}` the
tiny checkpoint. The model loaders, training and the lm-eval backend fail the test if they are reached, so every row
also shows that the input was refused before any model work. Storage that cannot be written (exit code 4) is
`test_storage.py`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main

SAMPLES_STAMP = "2024-01-01T00-00-00.000000"
LM_EVAL_RESULTS = {"results": {"t": {"acc,none": 1.0}}, "configs": {"t": {"output_type": "loglikelihood"}},
                   "versions": {"t": 1}, "n-shot": {"t": 0}, "n-samples": {"t": {"effective": 1}},
                   "config": {"model": "hf", "model_args": "pretrained=x"}, "chat_template": None}
BATTLE = '{"model_a": "a", "model_b": "b", "winner": "model_a"}\n'
TINY_TASKS = "{task: tiny_arithmetic_gen, metric: 'verifier,none'}"


def _suite(extra: str, entry: str = TINY_TASKS) -> str:
    """A suite over the packaged tiny tasks, with `extra` top-level keys."""
    from harness.resources import resource_path

    return f"task_paths: [{resource_path('suites', 'tiny')}]\nskills:\n  a: [{entry}]\n{extra}"


def _truncated(ckpt: Path, tmp: Path, keep: int | None) -> None:
    """A copy of the checkpoint whose weights file is cut to `keep` bytes (None: half of it)."""
    shutil.copytree(ckpt, tmp / "cut")
    weights = tmp / "cut" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2 if keep is None else keep])


EVAL = ["eval", "--model", "{ckpt}", "--suite", "tiny", "--limit", "2", "--results", "{tmp}/r"]
NIGHTLY = ["nightly", "--candidate", "{ckpt}", "--baseline", "champion", "--suite", "tiny", "--results", "{tmp}/r"]
ARENA = ["arena", "--models", "a={ckpt}", "b={ckpt}", "--results", "{tmp}/r"]

# (id, argv, files, exit code, fragment of the one line)
CASES = [
    # --- YAML: config files, suite files, nightly configs ----------------------------------------------------------
    ("config-not-utf8", ["run", "{tmp}/c.yaml", "--results", "{tmp}/r"], {"c.yaml": b"run:\n  name: caf\xe9\n"}, 2,
     "config file '{tmp}/c.yaml' is not UTF-8 text (byte 0xe9 at offset 16)"),
    ("eval-config-not-utf8", [*EVAL, "--config", "{tmp}/c.yaml"], {"c.yaml": b"eval: {limit: \xff}\n"}, 2,
     "is not UTF-8 text (byte 0xff"),
    ("config-a-list", ["run", "{tmp}/c.yaml", "--results", "{tmp}/r"], {"c.yaml": "- a\n- b\n"}, 2,
     "config file: expected a mapping of keys, got list"),
    ("config-a-number", ["run", "{tmp}/c.yaml", "--results", "{tmp}/r"], {"c.yaml": "42\n"}, 2,
     "config file: expected a mapping of keys, got int"),
    ("config-section-a-list", ["run", "{tmp}/c.yaml", "--results", "{tmp}/r"], {"c.yaml": "run: [1, 2]\n"}, 2,
     "config key run: a section, expected a mapping of its keys"),
    ("config-name-a-list", ["run", "{tmp}/c.yaml", "--results", "{tmp}/r"], {"c.yaml": "run: {name: [a, b]}\n"}, 2,
     "config key run.name: expected str, got ['a', 'b']"),
    ("config-a-folder", ["run", "{tmp}/d", "--results", "{tmp}/r"], {"d/x": ""}, 2, "config file '{tmp}/d' is a folder"),
    ("suite-not-utf8", [*EVAL[:3], "--suite", "{tmp}/s.yaml", "--results", "{tmp}/r"],
     {"s.yaml": b"skills:\n  a: [caf\xe9]\n"}, 2, "suite file '{tmp}/s.yaml' is not UTF-8 text (byte 0xe9"),
    ("suite-name-a-list", [*EVAL[:3], "--suite", "{tmp}/s.yaml", "--results", "{tmp}/r"],
     {"s.yaml": _suite("name: [x, y]\n")}, 2, "name must be a string, got ['x', 'y']"),
    ("suite-task-paths-a-string", [*EVAL[:3], "--suite", "{tmp}/s.yaml", "--results", "{tmp}/r"],
     {"s.yaml": "task_paths: tiny\nskills:\n  a: [tiny_arithmetic_gen]\n"}, 2,
     "task_paths must be a list of folders (relative to the suite file), e.g. [tiny], got 'tiny'"),
    ("suite-flag-a-string", [*EVAL[:3], "--suite", "{tmp}/s.yaml", "--results", "{tmp}/r"],
     {"s.yaml": _suite("lm_eval_tasks: 'no'\n")}, 2, "lm_eval_tasks must be true or false, got 'no'"),
    ("suite-task-a-number", [*EVAL[:3], "--suite", "{tmp}/s.yaml", "--results", "{tmp}/r"],
     {"s.yaml": "skills:\n  a: [5]\n"}, 2, "skill 'a': expected a mapping, got int"),
    ("suite-negative-max-gen-toks", [*EVAL[:3], "--suite", "{tmp}/s.yaml", "--results", "{tmp}/r"],
     {"s.yaml": _suite("", "{task: tiny_arithmetic_gen, gen_kwargs: {max_gen_toks: -3}}")}, 2,
     "gen_kwargs.max_gen_toks must be a whole number >= 1, got -3"),
    ("suite-negative-fewshot", [*EVAL[:3], "--suite", "{tmp}/s.yaml", "--results", "{tmp}/r"],
     {"s.yaml": _suite("", "{task: tiny_arithmetic_gen, num_fewshot: -2}")}, 2,
     "num_fewshot must be at least 0 (or null for the task's own), got -2"),
    ("nightly-config-not-utf8", [*NIGHTLY, "--config", "{tmp}/n.yaml"], {"n.yaml": b"suite: tin\xff\n"}, 2,
     "config file '{tmp}/n.yaml' is not UTF-8 text (byte 0xff at offset 10)"),
    ("nightly-min-effects-a-list", [*NIGHTLY, "--config", "{tmp}/n.yaml"], {"n.yaml": "min_effects: [a, b]\n"}, 2,
     "config key min_effects: expected a mapping, got ['a', 'b']"),
    ("nightly-suite-a-list", [*NIGHTLY, "--config", "{tmp}/n.yaml"], {"n.yaml": "suite: [tiny]\n"}, 2,
     "config key suite: expected str, got ['tiny']"),
    # --- a nightly's min_effects and sides, before any model work ----------------------------------------------------
    ("min-effects-unknown-metric-of-a-task", [*NIGHTLY, "--config", "{tmp}/n.yaml"],
     {"n.yaml": "min_effects: {'tiny_arithmetic_gen/nonsense,none': 0.1}\n"}, 2,
     ("min_effects key 'tiny_arithmetic_gen/nonsense,none': task 'tiny_arithmetic_gen' has no metric "
      "'nonsense,none' (its metrics: verifier,none, verifier,strict-match)")),
    ("min-effects-unknown-task", [*NIGHTLY, "--config", "{tmp}/n.yaml"],
     {"n.yaml": "min_effects: {'gsm8k/exact_match,strict-match': 0.1}\n"}, 2,
     "min_effects key 'gsm8k/exact_match,strict-match': 'gsm8k' is not a task or group of suite 'tiny'"),
    ("min-effects-unknown-metric", [*NIGHTLY, "--config", "{tmp}/n.yaml"], {"n.yaml": "min_effects: {acc: 0.1}\n"},
     2, "min_effects key 'acc' is not a metric of suite 'tiny' (its metrics: acc,none, acc_norm,none"),
    ("min-effects-not-a-headline", [*NIGHTLY, "--set", "min_effects.tiny_safety_mc/acc_norm,none=0.1"], {}, 2,
     "with metrics: headline, task 'tiny_safety_mc' is compared on 'acc,none' only"),
    ("nightly-against-itself", [*NIGHTLY[:4], "{ckpt}", *NIGHTLY[5:]], {}, 2,
     "candidate '{ckpt}' and baseline '{ckpt}' are the same checkpoint"),
    ("nightly-against-a-copy", [*NIGHTLY[:4], "{tmp}/copy", *NIGHTLY[5:]], {"copy": "{ckpt}"}, 2,
     "have the same content hash"),
    ("nightly-bad-alias", [*NIGHTLY, "--set", "alias=latest"], {}, 2, "config key alias: 'latest' is not a model alias"),
    ("nightly-bad-registered-model", [*NIGHTLY, "--registered-model", "a/b"], {}, 2,
     "config key registered_model: 'a/b' is not a registered-model name"),
    ("nightly-no-candidate", [*NIGHTLY[:1], *NIGHTLY[3:]], {}, 2, "--candidate is required: the checkpoint to judge"),
    ("nightly-aa-promote", [*NIGHTLY, "--aa", "--promote"], {}, 2,
     "--aa checks the baseline against itself: --promote does not apply"),
    ("nightly-aa-two-checkpoints", [*NIGHTLY[:4], "{tmp}/other", "--aa", *NIGHTLY[5:]],
     {"other": "{ckpt}", "other/note.txt": "another checkpoint\n"}, 2,
     "--aa compares a checkpoint with itself, but candidate '{ckpt}' and baseline '{tmp}/other' are two checkpoints"),
    ("nightly-bad-drift-tolerance", [*NIGHTLY, "--set", "drift_tolerance=2"], {}, 2,
     "config key drift_tolerance: 2 is out of range (valid: >= 0 and <= 1)"),
    # --- harness power: one line naming the flag and its valid range -------------------------------------------------
    ("power-effect-and-items", ["power", "--accuracy", "0.7", "--effect", "0.03", "--items", "100"], {}, 2,
     "argument --items: not allowed with argument --effect"),
    ("power-accuracy-out-of-range", ["power", "--accuracy", "1.5", "--effect", "0.03"], {}, 2,
     "--accuracy 1.5 is out of range (valid: > 0 and < 1)"),
    ("power-effect-above-accuracy", ["power", "--accuracy", "0.02", "--effect", "0.03"], {}, 2,
     "--effect 0.03 is out of range (valid: > 0 and < the accuracy 0.02"),
    ("power-disagreement-below-effect", ["power", "--accuracy", "0.7", "--effect", "0.03", "--disagreement", "0.01"],
     {}, 2, "--disagreement 0.01 is below the effect 0.03"),
    ("power-disagreement-impossible", ["power", "--accuracy", "0.7", "--effect", "0.03", "--disagreement", "0.9"],
     {}, 2, "--disagreement 0.9 is more than a baseline at 0.7 and a candidate at 0.67 can disagree on (valid: <= 0.63"),
    ("power-alpha-zero", ["power", "--accuracy", "0.7", "--items", "100", "--alpha", "0"], {}, 2,
     "--alpha 0.0 is out of range (valid: > 0 and < 1)"),
    ("power-metrics-zero", ["power", "--accuracy", "0.7", "--items", "100", "--metrics", "0"], {}, 2,
     "--metrics 0 is out of range (valid: >= 1)"),
    ("power-no-items", ["power", "--accuracy", "0.7", "--items", "0"], {}, 2, "--items 0 is out of range"),
    ("power-sided", ["power", "--accuracy", "0.7", "--items", "9", "--sided", "both"], {}, 2,
     "argument --sided: invalid choice: 'both'"),
    # --- JSONL and JSON --------------------------------------------------------------------------------------------
    ("prompts-not-utf8", [*ARENA, "--prompts", "{tmp}/p.jsonl"], {"p.jsonl": b'{"id": "a", "prompt": "caf\xe9"}\n'}, 2,
     "prompt file '{tmp}/p.jsonl' is not UTF-8 text (byte 0xe9 at offset 26)"),
    ("prompts-id-a-list", [*ARENA, "--prompts", "{tmp}/p.jsonl"], {"p.jsonl": '{"id": [1, 2], "prompt": "hi"}\n'}, 2,
     "line 1: field 'id' must be a string or a whole number, got [1, 2]"),
    ("prompts-skill-a-list", [*ARENA, "--prompts", "{tmp}/p.jsonl"],
     {"p.jsonl": '{"id": "a", "prompt": "hi", "skill": [1]}\n'}, 2, "line 1: field 'skill' must be a string, got [1]"),
    ("prompts-malformed-json", [*ARENA, "--prompts", "{tmp}/p.jsonl"], {"p.jsonl": '{"id": "a", "prompt": \n'}, 2,
     "line 1: not valid JSON"),
    ("battles-not-utf8-jsonl", ["rate", "{tmp}/b.jsonl"], {"b.jsonl": BATTLE.replace('"a"', '"caf\xe9"').encode("latin-1")},
     2, "battle file '{tmp}/b.jsonl' is not UTF-8 text (byte 0xe9"),
    ("battles-not-utf8-json", ["rate", "{tmp}/b.json"], {"b.json": f"[{BATTLE}]".replace('"a"', '"caf\xe9"').encode("latin-1")},
     2, "battle file '{tmp}/b.json' is not UTF-8 text (byte 0xe9"),
    ("battles-malformed-json", ["rate", "{tmp}/b.json"], {"b.json": f"[{BATTLE},"}, 2, "b.json: not valid JSON"),
    ("battles-a-number", ["rate", "{tmp}/b.json"], {"b.json": "42"}, 2, "expected a JSON list of battle objects"),
    ("battles-a-mapping-of-scalars", ["rate", "{tmp}/b.json"], {"b.json": BATTLE}, 2,
     "expected a JSON list of battle objects, or a mapping of columns to lists"),
    ("battles-model-a-list", ["rate", "{tmp}/b.jsonl"], {"b.jsonl": BATTLE.replace('"a"', '["a"]')}, 2,
     "row 1: column model_a is a"),
    ("battles-winner-a-list", ["rate", "{tmp}/b.jsonl"], {"b.jsonl": BATTLE.replace('"model_a"}', '["model_a"]}')},
     2, "row 1: column winner is a"),
    ("annotations-not-utf8", ["winrate", "{tmp}/a.json"],
     {"a.json": b'[{"preference": 1, "output_1": "caf\xe9", "output_2": "x"}]'}, 2,
     "annotations file '{tmp}/a.json' is not UTF-8 text (byte 0xe9"),
    ("annotations-malformed-json", ["winrate", "{tmp}/a.json"], {"a.json": '[{"preference": 1,'}, 2,
     "a.json: not valid JSON"),
    ("ratings-not-utf8", ["elo", "matrix", "{tmp}/r.json"], {"r.json": b'[{"model": "caf\xe9", "rating": 1}]'}, 2,
     "cannot read ratings"),
    ("ratings-duplicated", ["elo", "matrix", "a=1", "a=2"], {}, 2, "ratings: model 'a' is given twice (a=1 and a=2)"),
    ("lm-eval-results-not-utf8", ["import", "lm-eval", "{tmp}/o", "--results", "{tmp}/r"],
     {f"o/results_{SAMPLES_STAMP}.json": b'{"results": \xff}'}, 2, "could not be read"),
    ("lm-eval-samples-not-utf8", ["import", "lm-eval", "{tmp}/o", "--results", "{tmp}/r"],
     {f"o/results_{SAMPLES_STAMP}.json": json.dumps(LM_EVAL_RESULTS),
      f"o/samples_t_{SAMPLES_STAMP}.jsonl": b'{"doc_id": 0, "filter": "none", "x": "\xff"}\n'}, 2,
     f"samples_t_{SAMPLES_STAMP}.jsonl' line 1 is not UTF-8 text (byte 0xff at column 39)"),
    # --- checkpoints: checked when resolved, before any model loads --------------------------------------------------
    ("model-truncated", ["eval", "--model", "{tmp}/cut", "--suite", "tiny", "--results", "{tmp}/r"], {"cut": None}, 2,
     "model '{tmp}/cut': weights file {tmp}/cut/model.safetensors is truncated or corrupt: "),
    ("model-header-cut", ["eval", "--model", "{tmp}/cut", "--suite", "tiny", "--results", "{tmp}/r"], {"cut": 20}, 2,
     "20 bytes, but its header alone needs"),
    ("model-config-malformed", ["eval", "--model", "{tmp}/copy", "--suite", "tiny", "--results", "{tmp}/r"],
     {"copy": "{ckpt}", "copy/config.json": '{"model_type": '}, 2, "copy/config.json is not valid JSON"),
    ("arena-model-truncated", ["arena", "--models", "a={ckpt}", "b={tmp}/cut", "--limit", "2", "--results", "{tmp}/r"],
     {"cut": None}, 2, "model '{tmp}/cut': weights file"),
    ("nightly-baseline-truncated", [*NIGHTLY[:4], "{tmp}/cut", *NIGHTLY[5:]], {"cut": None}, 2,
     "baseline model '{tmp}/cut': weights file"),
    # --- an output path that names a folder (or a folder path that names a file) -------------------------------------
    ("eval-json-a-folder", [*EVAL, "--json", "{tmp}/d"], {"d/x": ""}, 2, "--json file '{tmp}/d' is a folder; name a file"),
    ("compare-json-a-folder", ["compare", "a", "b", "--json", "{tmp}/d", "--results", "{tmp}/r"], {"d/x": ""}, 2,
     "--json file '{tmp}/d' is a folder"),
    ("rate-output-a-folder", ["rate", "{tmp}/b.jsonl", "--output", "{tmp}/d"], {"b.jsonl": BATTLE, "d/x": ""}, 2,
     "--output file '{tmp}/d' is a folder"),
    ("elo-output-a-folder", ["elo", "matrix", "a=1", "b=2", "--output", "{tmp}/d"], {"d/x": ""}, 2,
     "--output file '{tmp}/d' is a folder"),
    ("nightly-html-a-folder", [*NIGHTLY, "--html", "{tmp}/d"], {"d/x": ""}, 2, "--html file '{tmp}/d' is a folder"),
    ("dashboard-out-a-file", ["dashboard", "--out", "{tmp}/f", "--results", "{tmp}/r"], {"f": "x"}, 2,
     "--out folder '{tmp}/f' is a file, not a folder"),
    ("rate-plots-a-file", ["rate", "{tmp}/b.jsonl", "--plots", "{tmp}/f"], {"b.jsonl": BATTLE, "f": "x"}, 2,
     "--plots folder '{tmp}/f' is a file"),
    ("results-a-file", [*EVAL[:-1], "{tmp}/f"], {"f": "x"}, 2, "results folder '{tmp}/f' is a file, not a folder"),
    # --- a tracking URI of an unknown scheme -------------------------------------------------------------------------
    ("uri-unknown-scheme-eval", ["MLFLOW_TRACKING_URI=foo://x", *EVAL], {}, 2,
     "MLFLOW_TRACKING_URI 'foo://x': not a tracking store MLflow knows; valid schemes: file, databricks"),
    ("uri-unknown-scheme-compare", ["MLFLOW_TRACKING_URI=foo://x", "compare", "a", "b"], {}, 2, "valid schemes:"),
    ("uri-unknown-scheme-rate", ["MLFLOW_TRACKING_URI=foo://x", "rate", "{tmp}/b.jsonl", "--mlflow"],
     {"b.jsonl": BATTLE}, 2, "MLFLOW_TRACKING_URI 'foo://x'"),
    # --- negative limits and counts ----------------------------------------------------------------------------------
    ("eval-negative-limit", [*EVAL[:6], "-5", *EVAL[7:]], {}, 2,
     "config key eval.limit: -5 is out of range (valid: >= 1, or null)"),
    # --- thinking budgets (eval.budgets): empty, unsorted, non-positive ------------------------------------------
    ("eval-budgets-empty", [*EVAL, "--set", "eval.budgets=[]"], {}, 2,
     "config key eval.budgets: [] is empty (valid: a strictly increasing list of thinking budgets in tokens"),
    ("eval-budgets-unsorted", [*EVAL, "--set", "eval.budgets=[64, 16]"], {}, 2,
     "config key eval.budgets: [64, 16] is not sorted (valid: a strictly increasing list"),
    ("run-budgets-repeated", ["run", "--results", "{tmp}/r", "--set", "eval.budgets=[16, 16]"], {}, 2,
     "config key eval.budgets: [16, 16] is not sorted"),
    ("eval-budgets-zero", [*EVAL, "--set", "eval.budgets=[0, 8]"], {}, 2,
     "config key eval.budgets: 0 is not a positive budget"),
    ("eval-budgets-not-a-list", [*EVAL, "--set", "eval.budgets=8"], {}, 2,
     "config key eval.budgets: 8 is not a list"),
    ("eval-budgets-without-delimiters", [*EVAL, "--set", "eval.budgets=[8]", "--set", "eval.reasoning={}"], {}, 2,
     "config key eval.budgets: thinking budgets need reasoning delimiters"),
    ("eval-reasoning-same-delimiters", [*EVAL, "--set", "eval.reasoning={start: '<t>', end: '<t>'}"], {}, 2,
     "config key eval.reasoning: start and end are both '<t>'"),
    ("nightly-budget-zero", [*NIGHTLY, "--budget", "0"], {}, 2,
     "config key budget: 0 is out of range (valid: >= 1, or null)"),
    ("compare-budget-not-a-number", ["compare", "a", "b", "--budget", "x"], {}, 2,
     "argument --budget: invalid int value: 'x'"),
    ("arena-budget-on-vllm", [*ARENA, "--set", "arena.budget=8", "--set", "arena.engine=vllm"], {}, 2,
     "config key arena.budget: budget forcing runs on arena.engine hf"),
    ("arena-negative-limit", [*ARENA, "--limit", "-1"], {}, 2,
     "config key arena.prompts: -1 is out of range (valid: >= 0)"),
    ("rate-negative-bootstrap", ["rate", "{tmp}/b.jsonl", "--bootstrap", "-5"], {"b.jsonl": BATTLE}, 2,
     "argument --bootstrap: '-5' is out of range (valid: >= 0)"),
    ("rate-negative-seed", ["rate", "{tmp}/b.jsonl", "--seed", "-1"], {"b.jsonl": BATTLE}, 2,
     "argument --seed: '-1' is out of range (valid: >= 0)"),
    ("rate-odds-base-1", ["rate", "{tmp}/b.jsonl", "--base", "1"], {"b.jsonl": BATTLE}, 2,
     "argument --base: '1' is not a valid odds base (valid: > 1)"),
    ("rate-negative-k", ["rate", "{tmp}/b.jsonl", "--method", "online-elo", "--k", "-4"], {"b.jsonl": BATTLE}, 2,
     "argument --k: '-4' is not a positive number (valid: > 0)"),
    ("dashboard-negative-samples", ["dashboard", "--out", "{tmp}/s", "--samples", "-1"], {}, 2,
     "argument --samples: '-1' is out of range (valid: >= 0)"),
    # --- arguments argparse refuses: one line too, naming the command's --help ---------------------------------------
    ("eval-limit-not-a-number", [*EVAL[:6], "abc", *EVAL[7:]], {}, 2,
     "argument --limit: invalid int value: 'abc' (see harness eval --help)"),
    ("rate-no-battles", ["rate"], {}, 2, "the following arguments are required: BATTLES (see harness rate --help)"),
    ("unknown-command", ["evaluate"], {}, 2, "argument COMMAND: invalid choice: 'evaluate'"),
    # --- names and devices -------------------------------------------------------------------------------------------
    ("empty-experiment", [*EVAL, "--experiment", ""], {}, 2,
     "config key run.experiment: '' is not an MLflow experiment name"),
    ("device-not-a-device", [*EVAL, "--set", "eval.device=banana"], {}, 2,
     "config key eval.device: 'banana' is not a torch device"),
    ("device-not-on-this-machine", [*EVAL, "--set", "eval.device=cuda:99"], {}, 2,
     "config key eval.device: 'cuda:99', but this machine has no such device"),
    ("arena-device-not-on-this-machine", [*ARENA, "--set", "arena.device=cuda:99"], {}, 2,
     "config key arena.device: 'cuda:99', but this machine has no such device"),
    # --- what the pipeline reads after training, read before it ------------------------------------------------------
    ("run-unknown-suite", ["run", "--quick", "--results", "{tmp}/r", "--set", "eval.suite=nosuch"], {}, 2,
     "unknown suite 'nosuch'; available: tiny"),
    ("run-missing-prompts", ["run", "--quick", "--results", "{tmp}/r", "--set", "arena.prompt_file={tmp}/none.jsonl"],
     {}, 2, "prompt file '{tmp}/none.jsonl' not found"),
    ("run-prompts-without-skills", ["run", "--quick", "--results", "{tmp}/r", "--set", "arena.prompt_file={tmp}/p.jsonl"],
     {"p.jsonl": '{"id": "a", "prompt": "hi"}\n'}, 2, "the verifier judge needs a 'skill'"),
    # --- a stage's own data and trainer settings, checked before any training ------------------------------------------
    ("run-dataset-unknown-column", ["run", "--quick", "--results", "{tmp}/r", "--set", "sft.dataset={tmp}/d.jsonl",
                                    "--set", "sft.dataset_columns={prompt: q, completion: a}"],
     {"d.jsonl": '{"question": "x", "answer": "y"}\n'}, 2,
     "config key sft.dataset_columns.prompt: no column 'q' in '{tmp}/d.jsonl' (columns: question, answer)"),
    ("run-trl-unknown-key", ["run", "--quick", "--results", "{tmp}/r", "--set", "dpo.trl={beta2: 1}"], {}, 2,
     "config key dpo.trl.beta2: not a field of trl.DPOConfig"),
    ("run-verifier-not-importable", ["run", "--quick", "--results", "{tmp}/r", "--set", "rlvr.verifier=nomod_q:f"], {},
     2, "config key rlvr.verifier 'nomod_q:f': module 'nomod_q' does not import"),
    ("run-lora-no-such-modules", ["run", "--quick", "--results", "{tmp}/r", "--set", "sft.lora.r=4",
                                  "--set", "sft.lora.target_modules=[query_key_value]"], {}, 2,
     "config key sft.lora.target_modules: query_key_value not in the tiny model pretraining builds"),
]


def _write(tmp: Path, files: dict, ckpt: Path) -> None:
    for name, content in files.items():
        path = tmp / name
        if name == "cut":
            _truncated(ckpt, tmp, content)
        elif content == "{ckpt}":
            shutil.copytree(ckpt, path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else content.encode())


@pytest.mark.parametrize("argv, files, code, fragment", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input_is_one_line(argv, files, code, fragment, tmp_path, tiny_checkpoint, no_model_work, monkeypatch,
                               capsys):
    _write(tmp_path, files, tiny_checkpoint)
    fill = {"{tmp}": str(tmp_path), "{ckpt}": str(tiny_checkpoint)}

    def filled(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    args = [filled(a) for a in argv]
    while args and "=" in args[0] and args[0].split("=", 1)[0].isupper():  # NAME=value: an environment variable
        monkeypatch.setenv(*args.pop(0).split("=", 1))
    assert main(args) == code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("harness: error: ") and "Traceback" not in captured.err + captured.out
    assert filled(fragment) in lines[0]


def test_every_category_of_the_issue_is_covered():
    """The bad inputs issue 11 lists, each with at least one row."""
    ids = {c[0] for c in CASES}
    for prefix in ("config-not-utf8", "suite-not-utf8", "nightly-config-not-utf8", "prompts-not-utf8",
                   "battles-not-utf8", "annotations-malformed-json", "config-name-a-list", "model-truncated",
                   "eval-json-a-folder", "rate-output-a-folder", "dashboard-out-a-file", "uri-unknown-scheme",
                   "eval-negative-limit", "arena-negative-limit", "min-effects-unknown", "nightly-against-itself"):
        assert any(i.startswith(prefix) for i in ids), prefix
    assert len(CASES) >= 70
