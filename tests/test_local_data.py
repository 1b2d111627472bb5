"""Local data for lm-eval tasks: a hub-like data_dir and per-task files, what every task reads with its digest, and a
cache and suite version that cannot go stale when a data file changes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from harness.config import EvalConfig
from harness.errors import HarnessError
from harness.evals import evaluate, local_data
from harness.evals import suite as suites
from harness.nightly import records
from harness.tracking import store

TASK = """\
task: {name}
dataset_path: fake/{dataset}
dataset_name: main
output_type: multiple_choice
test_split: test
doc_to_text: "Q: {{{{question}}}} A:"
doc_to_target: "{{{{label}}}}"
doc_to_choice: ["no", "yes"]
metric_list:
  - metric: acc
metadata:
  version: 1.0
"""


def _rows(n: int, offset: int = 0) -> list[dict]:
    return [{"id": f"q{i}", "question": f"is {i + offset} even?", "label": int((i + offset) % 2 == 0)}
            for i in range(n)]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture()
def mirrored(tmp_path) -> Path:
    """A suite of two lm-eval tasks whose datasets (fake/alpha, fake/beta) live only in a hub-like data_dir."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, dataset in (("mirror_alpha", "alpha"), ("mirror_beta", "beta")):
        (tasks / f"{name}.yaml").write_text(TASK.format(name=name, dataset=dataset))
    _write_jsonl(tmp_path / "data" / "fake" / "alpha" / "main" / "test.jsonl", _rows(6))
    _write_jsonl(tmp_path / "data" / "fake" / "beta" / "main" / "test.jsonl", _rows(6, offset=1))
    (tmp_path / "suite.yaml").write_text("task_paths: [tasks]\nlm_eval_tasks: false\ndata_dir: data\n"
                                         "defaults: {num_fewshot: 0}\nskills:\n  parity: [mirror_alpha, mirror_beta]\n")
    return tmp_path


def _index(**entries) -> SimpleNamespace:
    """A stand-in for lm-eval's task index: name → (kind, config)."""
    return SimpleNamespace(task_index={name: SimpleNamespace(kind=SimpleNamespace(name=kind), cfg=cfg, yaml_path=None,
                                                             tags=set()) for name, (kind, cfg) in entries.items()})


def test_mirror_layout_compression_and_formats(tmp_path):
    root = tmp_path / "mirror"
    _write_jsonl(root / "org" / "ds" / "cfg" / "test.jsonl", _rows(3))
    with gzip.open(root / "org" / "ds" / "cfg" / "train.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in _rows(3)))
    (root / "org" / "plain").mkdir(parents=True)
    pd.DataFrame(_rows(2)).to_parquet(root / "org" / "plain" / "validation.parquet")
    tm = _index(t=("TASK", {"dataset_path": "org/ds", "dataset_name": "cfg", "test_split": "test",
                            "fewshot_split": "train"}),
                v=("TASK", {"dataset_path": "org/plain", "validation_split": "validation"}),
                g=("GROUP", {"task": ["t", "v"]}))
    found = local_data.sources(tm, "g", root=root)
    assert sorted(found) == ["t", "v"]
    assert found["t"].kind == "mirror" and set(found["t"].files) == {"test", "train"}
    assert found["t"].files["train"].endswith("train.jsonl.gz") and found["v"].files["validation"].endswith(".parquet")
    # the same rows uncompressed have the same digest: content, not bytes on disk
    plain = {"test": found["t"].files["test"], "train": str(tmp_path / "train.jsonl")}
    _write_jsonl(Path(plain["train"]), _rows(3))
    assert local_data.digest(plain) == found["t"].digest
    data = found["t"].task_data()
    assert data.source_type == "local" and data.rows is None and len(data.digest) == 16  # .gz: rows not counted


def test_missing_dataset_names_the_paths_tried(tmp_path):
    tm = _index(t=("TASK", {"dataset_path": "org/absent", "dataset_name": "main", "test_split": "test"}))
    with pytest.raises(HarnessError) as info:
        local_data.sources(tm, "t", root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and "dataset org/absent/main not found in data_dir" in message
    assert str(tmp_path / "org" / "absent" / "main" / "test.jsonl") in message
    assert str(tmp_path / "org" / "absent" / "test.jsonl") in message
    hub = local_data.sources(tm, "t", root=None)["t"]  # no mirror: the hub, identified by id and revision
    assert hub.kind == "hub" and hub.task_data().source_type == "hugging_face"
    tm.task_index["t"].cfg["dataset_kwargs"] = {"revision": "abc"}
    assert local_data.sources(tm, "t", root=None)["t"].digest != hub.digest


def test_hub_dataset_digest_follows_the_resolved_revision(monkeypatch):
    """The hub cannot be reached here: its answer is stood in for by a local function returning a commit sha."""
    import huggingface_hub

    answers = {"main": "sha-1"}
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info",
                        lambda self, repo, revision=None, timeout=None: SimpleNamespace(sha=answers["main"]))
    local_data.hub_revision.cache_clear()
    tm = _index(t=("TASK", {"dataset_path": "org/ds", "test_split": "test"}))
    first = local_data.sources(tm, "t", root=None)["t"]
    assert first.revision == "sha-1"
    answers["main"] = "sha-2"  # the dataset was updated on the hub
    local_data.hub_revision.cache_clear()
    assert local_data.sources(tm, "t", root=None)["t"].digest != first.digest
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: nothing is asked, the revision stays as the task names it
    local_data.hub_revision.cache_clear()
    assert local_data.sources(tm, "t", root=None)["t"].revision is None
    local_data.hub_revision.cache_clear()


def test_entry_data_for_one_task(tmp_path):
    _write_jsonl(tmp_path / "mine.jsonl", _rows(4))
    tm = _index(t=("TASK", {"dataset_path": "org/ds", "test_split": "test"}), g=("GROUP", {"task": ["t"]}))
    found = local_data.sources(tm, "t", root=None, entry_data={"test": str(tmp_path / "mine.jsonl")})["t"]
    assert found.kind == "entry" and found.task_data().rows == 4
    with pytest.raises(HarnessError, match="evaluates split 'test'"):
        local_data.sources(tm, "t", root=None, entry_data={"train": str(tmp_path / "mine.jsonl")})
    with pytest.raises(HarnessError, match="not found"):
        local_data.sources(tm, "t", root=None, entry_data={"test": str(tmp_path / "nope.jsonl")})
    with pytest.raises(HarnessError, match="is a group"):
        local_data.sources(tm, "g", root=None, entry_data={"test": str(tmp_path / "mine.jsonl")})


def test_suite_keys_are_checked(tmp_path):
    (tmp_path / "s.yaml").write_text("data_dir: nowhere\nskills: {a: [x]}\n")
    with pytest.raises(HarnessError, match="data_dir folder"):
        suites.load(str(tmp_path / "s.yaml"))
    (tmp_path / "s.yaml").write_text("skills: {a: [{task: x, repeats: 2, pass_at: [3]}]}\n")
    with pytest.raises(HarnessError, match="pass_at must be a list of whole numbers from 1 to repeats"):
        suites.load(str(tmp_path / "s.yaml"))
    (tmp_path / "s.yaml").write_text("skills: {a: [{task: x, data: {test: d/t.jsonl}}]}\n")
    assert suites.load(str(tmp_path / "s.yaml")).entries[0].data == {"test": str(tmp_path / "d" / "t.jsonl")}


def test_lm_eval_task_reads_the_mirror_and_a_data_edit_reruns_exactly_its_task(mirrored, tiny_checkpoint, tmp_path,
                                                                                monkeypatch):
    monkeypatch.delenv(local_data.ENV, raising=False)
    results = tmp_path / "results"
    cfg = EvalConfig(device="cpu", bootstrap_iters=0)
    suite = str(mirrored / "suite.yaml")
    first = evaluate(str(tiny_checkpoint), suite, cfg=cfg, results_dir=results)
    assert first.cached == [] and set(first.samples) == {"mirror_alpha", "mirror_beta"}
    assert list(first.samples["mirror_alpha"]["item_id"]) == [f"q{i}" for i in range(6)]
    assert first.sources["mirror_alpha"].endswith("fake/alpha/main/test.jsonl")
    params = store.run_params(first.run_id, results)
    assert params["task.mirror_alpha.data_digest"] == first.digests["mirror_alpha"]
    version = records.suite_version(suites.load(suite))

    again = evaluate(str(tiny_checkpoint), suite, cfg=cfg, results_dir=results)
    assert again.cached == ["mirror_alpha", "mirror_beta"]
    _write_jsonl(mirrored / "data" / "fake" / "alpha" / "main" / "test.jsonl", _rows(6, offset=2))  # edit one file
    edited = evaluate(str(tiny_checkpoint), suite, cfg=cfg, results_dir=results)
    assert edited.cached == ["mirror_beta"]  # exactly the task that reads it ran again
    assert edited.digests["mirror_alpha"] != first.digests["mirror_alpha"]
    assert records.suite_version(suites.load(suite)) != version

    monkeypatch.setenv(local_data.ENV, str(mirrored / "data"))  # the cluster-wide mirror, for a suite without one
    (mirrored / "suite.yaml").write_text("task_paths: [tasks]\nlm_eval_tasks: false\ndefaults: {num_fewshot: 0}\n"
                                         "skills:\n  parity: [mirror_alpha, mirror_beta]\n")
    assert evaluate(str(tiny_checkpoint), suite, cfg=cfg, results_dir=results).cached == ["mirror_alpha",
                                                                                          "mirror_beta"]


def test_repeats_pool_samples_and_report_pass_at_k(mirrored, tiny_checkpoint, tmp_path):
    (mirrored / "tasks" / "gen.yaml").write_text(
        "task: mirror_gen\ndataset_path: fake/alpha\ndataset_name: main\noutput_type: generate_until\n"
        "test_split: test\ndoc_to_text: 'Q: {{question}} A:'\ndoc_to_target: \"{{'yes' if label else 'no'}}\"\n"
        "generation_kwargs: {until: ['\\n'], max_gen_toks: 4}\nmetric_list:\n  - metric: exact_match\n"
        "metadata: {version: 1.0}\n")
    (mirrored / "suite.yaml").write_text(
        "task_paths: [tasks]\nlm_eval_tasks: false\ndata_dir: data\nskills:\n  gen:\n"
        "    - {task: mirror_gen, repeats: 3, pass_at: [1, 3], gen_kwargs: {do_sample: true, temperature: 1.0}}\n")
    cfg = EvalConfig(device="cpu", bootstrap_iters=0)
    result = evaluate(str(tiny_checkpoint), str(mirrored / "suite.yaml"), cfg=cfg, results_dir=tmp_path / "r")
    table = result.samples["mirror_gen"]
    assert sorted(table["repeat"].unique()) == [0, 1, 2] and len(table) == 18
    assert table.groupby("item_id")["response"].nunique().max() > 1  # seeded runs sample differently
    scores = result.scores.set_index("metric")
    em = table["exact_match,none"]
    assert scores.loc["exact_match,none", "value"] == pytest.approx(em.mean())
    by_item = em.groupby(table["item_id"]).mean()
    assert scores.loc["exact_match,none", "stderr"] == pytest.approx(by_item.std(ddof=1) / len(by_item) ** 0.5,
                                                                     nan_ok=True)
    assert scores.loc["pass@1,none", "value"] == pytest.approx(em.mean())  # pass@1 is the mean
    assert scores.loc["pass@3,none", "value"] == pytest.approx((by_item > 0).mean())
    assert "exact_match_repeat_sd,none" in scores.index
    assert len(result.lm_eval["repeats"]["mirror_gen"]) == 3
    again = evaluate(str(tiny_checkpoint), str(mirrored / "suite.yaml"), cfg=cfg, results_dir=tmp_path / "r")
    assert again.cached == ["mirror_gen"]  # every run cached on its own
    pd.testing.assert_frame_equal(again.scores, result.scores)
