"""The nightly on lm-eval's real task shapes, without models: two eval records built from outputs shaped like
lm-eval's own (IFEval's ``key`` and list-valued instruction-level metrics, a bbh group of three subtasks without
an id field, HumanEval's ``task_id``), with every reported number computed by lm-eval's own aggregation functions.
Checks pairing by document identity and content, groups compared as groups inside the Holm family, and means that
equal lm-eval's. One end-to-end nightly on the tiny suite at the end."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pandas as pd
import pytest
from lm_eval.api.metrics import aggregate_subtask_metrics, mean
from lm_eval.tasks.ifeval.utils import agg_inst_level_acc

from harness.errors import HarnessError
from harness.evals import items
from harness.evals import suite as suites
from harness.evals.result import sample_tables
from harness.nightly import records
from harness.nightly.config import NightlyConfig
from harness.nightly.stats import adjust_p_values, compare_suite

BBH = ["bbh_fewshot_boolean_expressions", "bbh_fewshot_date_understanding", "bbh_fewshot_navigate"]
BBH_SIZES = [6, 10, 16]  # unequal, so a size-weighted and an unweighted group score differ
IFEVAL_METRICS = ["prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"]
# The aggregations as lm-eval logs a task's config: a registered name, or a function's source.
IFEVAL_CONFIG = {"task": "ifeval", "metric_list": [
    {"metric": m, "aggregation": inspect.getsource(agg_inst_level_acc) if m.startswith("inst") else "mean",
     "higher_is_better": True} for m in IFEVAL_METRICS]}
MEAN_CONFIG = {"metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}]}
HUMANEVAL_CONFIG = {"task": "humaneval", "metric_list": [{"metric": "pass@1", "aggregation": "mean",
                                                          "higher_is_better": True}]}
INST = "inst_level_strict_acc,none"


# --- lm-eval-shaped outputs -----------------------------------------------------------------------------------


def _docs(seed: int = 0) -> dict[str, list[dict]]:
    rng = np.random.default_rng(seed)
    docs = {"ifeval": [{"key": 1000 + 7 * i, "prompt": f"Write {i} in quotes.",
                        "instruction_id_list": ["startend:quotation"] * int(rng.integers(1, 5)), "kwargs": [{}]}
                       for i in range(40)],
            "humaneval": [{"task_id": f"HumanEval/{i}", "prompt": f"def f{i}():\n", "entry_point": f"f{i}",
                           "test": f"assert f{i}() == {i}"} for i in range(30)]}
    for task, n in zip(BBH, BBH_SIZES):
        docs[task] = [{"input": f"{task} question {i}", "target": "True" if i % 2 else "False"} for i in range(n)]
    return docs


def _scores(docs: dict[str, list[dict]], p: float, seed: int) -> dict[str, list]:
    """Per task, each document's per-item values as lm-eval's process_results returns them."""
    rng = np.random.default_rng(seed)
    out = {"ifeval": [], "humaneval": [float(rng.random() < p) for _ in docs["humaneval"]]}
    for doc in docs["ifeval"]:
        strict = [bool(rng.random() < p) for _ in doc["instruction_id_list"]]
        loose = [s or bool(rng.random() < 0.3) for s in strict]
        out["ifeval"].append({"prompt_level_strict_acc": all(strict), "inst_level_strict_acc": strict,
                              "prompt_level_loose_acc": all(loose), "inst_level_loose_acc": loose})
    for task in BBH:
        out[task] = [{"exact_match": float(rng.random() < p)} for _ in docs[task]]
    return out


def _output(docs: dict[str, list[dict]], scores: dict[str, list], *, weight_by_size: bool = True,
            order: dict[str, list[int]] | None = None) -> dict:
    """lm-eval's output for ifeval, the bbh group and humaneval; `order` permutes a task's documents (doc_id is the
    position), as a reshuffled dataset would."""
    out: dict = {"results": {}, "group_subtasks": {"bbh_fewshot": list(BBH)}, "configs": {}, "versions": {},
                 "higher_is_better": {}, "n-samples": {}, "samples": {}}
    for task, task_docs in docs.items():
        positions = (order or {}).get(task, range(len(task_docs)))
        samples = []
        for doc_id, i in enumerate(positions):
            doc, value = task_docs[i], scores[task][i]
            values = value if isinstance(value, dict) else {"pass@1": value}
            filt = "create_test" if task == "humaneval" else "none"
            samples.append({"doc_id": doc_id, "doc": doc, "target": doc.get("target", 0),
                            "arguments": [[doc.get("prompt", doc.get("input")), {"until": ["\n\n"]}]],
                            "resps": [["answer"]], "filtered_resps": ["answer"], "filter": filt,
                            "metrics": list(values), **values})
        config = IFEVAL_CONFIG if task == "ifeval" else HUMANEVAL_CONFIG if task == "humaneval" else MEAN_CONFIG
        names = [m["metric"] for m in config["metric_list"]]
        filt = "create_test" if task == "humaneval" else "none"
        result = {"alias": task, "sample_len": len(samples)}
        for name in names:  # lm-eval's own aggregation of the per-item values, in doc order
            raw = [s[name] for s in samples]
            result[f"{name},{filt}"] = agg_inst_level_acc(raw) if name.startswith("inst") else mean(raw)
        out["results"][task] = result
        out["configs"][task] = {**config, "task": task}
        out["versions"][task] = 1.0
        out["higher_is_better"][task] = {name: True for name in names}
        out["n-samples"][task] = {"original": len(samples), "effective": len(samples)}
        out["samples"][task] = samples
    values = [out["results"][t]["exact_match,none"] for t in BBH]
    sizes = [out["results"][t]["sample_len"] for t in BBH]
    out["results"]["bbh_fewshot"] = {"alias": "bbh_fewshot", "sample_len": sum(sizes), "exact_match_stderr,none": 0.01,
                                     "exact_match,none": aggregate_subtask_metrics(values, sizes, weight_by_size)}
    out["groups"] = {"bbh_fewshot": out["results"]["bbh_fewshot"]}
    out["higher_is_better"]["bbh_fewshot"] = {"exact_match": True}
    return out


def _record(output: dict, run_id: str) -> records.EvalRecord:
    return records.EvalRecord(run_id=run_id, model=run_id, model_hash=run_id, suite="real", settings={},
                              scores=pd.DataFrame(), lm_eval={k: v for k, v in output.items() if k != "samples"},
                              samples=sample_tables(output))


@pytest.fixture()
def suite(tmp_path):
    """A suite over ifeval, the bbh group and humaneval, with lm-eval's bbh_fewshot group config (three subtasks;
    `weight_by_size` as the test writes it)."""
    def make(weight_by_size: bool = True) -> suites.Suite:
        folder = tmp_path / f"tasks_{weight_by_size}"
        folder.mkdir(exist_ok=True)
        (folder / "_bbh_fewshot.yaml").write_text(
            "group: bbh_fewshot\ntask:\n" + "".join(f"  - {t}\n" for t in BBH)
            + "aggregate_metric_list:\n  - metric: exact_match\n    aggregation: mean\n"
            + f"    weight_by_size: {str(weight_by_size).lower()}\nmetadata:\n  version: 3.0\n")
        path = tmp_path / f"real_{weight_by_size}.yaml"
        path.write_text(f"task_paths: [{folder.name}]\nlm_eval_tasks: false\nskills:\n"
                        f"  instructions: [{{task: ifeval, metric: '{INST}'}}]\n  reasoning: [bbh_fewshot]\n"
                        "  code: [{task: humaneval, metric: 'pass@1,create_test'}]\n")
        return suites.load(str(path))
    return make


def _sides(weight_by_size: bool = True, **baseline) -> tuple[records.EvalRecord, records.EvalRecord, dict, dict]:
    docs = _docs()
    cand_out = _output(docs, _scores(docs, 0.55, seed=1), weight_by_size=weight_by_size)
    base_out = _output(baseline.pop("docs", docs), _scores(docs, 0.7, seed=2), weight_by_size=weight_by_size,
                       **baseline)
    return _record(cand_out, "c"), _record(base_out, "b"), cand_out, base_out


# --- identity and content -------------------------------------------------------------------------------------


def test_samples_record_the_id_field_the_doc_hash_and_list_lengths():
    cand, _, out, _ = _sides()
    ifeval, humaneval, bbh = (cand.samples[t] for t in ("ifeval", "humaneval", BBH[0]))
    assert set(ifeval.id_field) == {"key"} and ifeval.item_id.tolist()[:2] == ["1000", "1007"]
    assert set(humaneval.id_field) == {"task_id"} and humaneval.item_id.iloc[3] == "HumanEval/3"
    assert set(bbh.id_field) == {"doc_id"} and bbh.item_id.tolist() == [str(i) for i in range(BBH_SIZES[0])]
    doc = out["samples"]["ifeval"][0]["doc"]
    assert ifeval.doc_hash.iloc[0] == items.doc_hash(dict(reversed(list(doc.items()))))  # key order is not content
    assert ifeval.doc_hash.is_unique
    lengths = [len(d["instruction_id_list"]) for d in _docs()["ifeval"]]
    assert ifeval[items.count_column(INST)].tolist() == lengths
    assert "n/inst_level_strict_acc/none" not in cand.metric_columns("ifeval")
    assert cand.metric_columns("ifeval") == [f"{m},none" for m in IFEVAL_METRICS]


def test_reordered_documents_pair_by_key_and_task_id(suite):
    docs = _docs()
    order = {t: list(np.random.default_rng(3).permutation(len(docs[t]))) for t in ("ifeval", "humaneval")}
    cand, base, _, base_out = _sides(order=order)
    assert base.samples["humaneval"].item_id.tolist() != cand.samples["humaneval"].item_id.tolist()
    assert records.incomparable(cand, base) == []
    pairs = {(p.task, p.metric): p for p in records.paired_metrics(suite(), cand, base, NightlyConfig())}
    by_id = {s["doc"]["task_id"]: s["pass@1"] for s in base_out["samples"]["humaneval"]}
    expected = [by_id[i] for i in cand.samples["humaneval"].item_id]
    assert pairs[("humaneval", "pass@1,create_test")].baseline.tolist() == expected
    inst = pairs[("ifeval", INST)]
    assert inst.baseline.mean() != pytest.approx(inst.candidate.mean())
    # the baseline's numbers are lm-eval's whatever the order its documents came in
    (c,) = [c for c in compare_suite([inst]) if c.task == "ifeval"]
    assert c.baseline_mean == pytest.approx(base_out["results"]["ifeval"][INST], abs=1e-12)


def test_an_edited_document_under_the_same_id_is_refused(suite):
    docs = _docs()
    edited = {t: [dict(d) for d in v] for t, v in docs.items()}
    edited["ifeval"][5]["prompt"] += " Twice."
    # two HumanEval documents get other unit-test code (data, not assertions of this test): same task_id, new content
    edited["humaneval"][2]["test"] += "\n# edited\n"
    edited["humaneval"][7]["test"] += "\n# edited\n"
    cand, base, _, _ = _sides(docs=edited)
    reasons = records.incomparable(cand, base)
    assert "task ifeval: 1 items changed content (same 'key', different document)" in reasons
    assert "task humaneval: 2 items changed content (same 'task_id', different document)" in reasons
    assert len(reasons) == 2
    with pytest.raises(HarnessError, match=r"task ifeval: 1 items changed content"):
        records.paired_metrics(suite(), cand, base, NightlyConfig())


def test_pairing_by_index_needs_identical_hashes():
    docs = _docs()
    order = {BBH[1]: list(range(BBH_SIZES[1]))[::-1]}  # same documents, reversed: doc_id no longer names the item
    cand, base, _, _ = _sides(order=order)
    reasons = records.incomparable(cand, base)
    assert reasons == [f"task {BBH[1]}: {BBH_SIZES[1]} items changed content at the same doc index (the data has no "
                       "id field, so items pair by position: it was reordered or edited)"]
    assert records.incomparable(cand, _sides()[1]) == []
    fewer = {t: v[:-1] if t == BBH[2] else v for t, v in docs.items()}
    reasons = records.incomparable(cand, _sides(docs=fewer)[1])
    assert reasons == [f"task {BBH[2]}: different items scored (1 only for the candidate, 0 only for the baseline)"]


# --- groups and the multiple-comparison family ----------------------------------------------------------------


@pytest.mark.parametrize("weight_by_size", [True, False])
def test_groups_are_compared_pooled_inside_the_holm_family(suite, weight_by_size):
    cand, base, cand_out, base_out = _sides(weight_by_size)
    pairs = records.paired_metrics(suite(weight_by_size), cand, base, NightlyConfig())
    assert [(p.task, p.metric) for p in pairs] == [("ifeval", INST), *[(t, "exact_match,none") for t in BBH],
                                                   ("bbh_fewshot", "exact_match,none"), ("humaneval",
                                                                                         "pass@1,create_test")]
    group = pairs[4]
    assert group.candidate.size == sum(BBH_SIZES)  # every subtask's items, keyed by (subtask, item)
    comparisons = compare_suite(pairs, correction="holm")
    c = comparisons[4]
    score = {side: out["results"]["bbh_fewshot"]["exact_match,none"] for side, out in (("c", cand_out),
                                                                                     ("b", base_out))}
    assert (c.candidate_mean, c.baseline_mean) == pytest.approx((score["c"], score["b"]), abs=1e-12)
    assert c.delta == pytest.approx(score["c"] - score["b"], abs=1e-12)
    # size-weighted: one item, one vote (McNemar on the pooled items); unweighted: each subtask's items share 1/3
    assert c.test == ("mcnemar_exact" if weight_by_size else "sign_flip_permutation")
    assert (group.weights is None) == weight_by_size
    unweighted = np.mean([cand_out["results"][t]["exact_match,none"] for t in BBH])
    assert (c.candidate_mean == pytest.approx(unweighted)) == (not weight_by_size)
    # one family: six comparisons, the group's among them, adjusted together
    assert len(comparisons) == 6
    assert [x.p_adjusted for x in comparisons] == pytest.approx(
        list(adjust_p_values([x.p_value for x in comparisons], "holm")))
    assert c.p_adjusted > c.p_value or c.p_adjusted == 1.0


def test_a_group_entry_s_headline_must_be_an_aggregate_the_group_reports(suite):
    cand, base, _, _ = _sides()
    spec = suite()
    entry = suites.Entry("reasoning", "bbh_fewshot", metric="exact_match,none")
    spec = suites.Suite(name="real", path=spec.path, description="", task_paths=spec.task_paths,
                        lm_eval_tasks=False, entries=(entry,))
    assert [p.task for p in records.paired_metrics(spec, cand, base, NightlyConfig())] == [*BBH, "bbh_fewshot"]
    group = cand.lm_eval["results"]["bbh_fewshot"]
    group["exact_match,get-answer"] = group.pop("exact_match,none")
    with pytest.raises(HarnessError, match=r"group 'bbh_fewshot' reports no aggregate 'exact_match,none' \(the "
                                           r"suite's headline\); it reports exact_match,get-answer"):
        records.paired_metrics(spec, cand, base, NightlyConfig())


# --- aggregation as lm-eval's ---------------------------------------------------------------------------------


def test_ifeval_instruction_level_means_are_lm_eval_micro_averages(suite):
    cand, base, cand_out, base_out = _sides()
    pairs = [p for p in records.paired_metrics(suite(), cand, base, NightlyConfig(metrics="all"))
             if p.task == "ifeval"]
    comparisons = {c.metric: c for c in compare_suite(pairs)}
    assert set(comparisons) == {f"{m},none" for m in IFEVAL_METRICS}
    for metric, c in comparisons.items():
        name = metric.partition(",")[0]
        assert c.candidate_mean == pytest.approx(cand_out["results"]["ifeval"][metric], abs=1e-12)
        assert c.baseline_mean == pytest.approx(base_out["results"]["ifeval"][metric], abs=1e-12)
        flat = [v for s in cand_out["samples"]["ifeval"] for v in s[name]] if name.startswith("inst") else None
        if flat is not None:  # the micro-average over instructions, not the mean of the items' fractions
            assert c.candidate_mean == pytest.approx(sum(flat) / len(flat), abs=1e-12)
            fractions = cand.samples["ifeval"][metric].mean()
            assert not math.isclose(c.candidate_mean, fractions, abs_tol=1e-3)
            assert c.test == "sign_flip_permutation"  # instructions compared, clustered by item
        else:
            assert c.test == "mcnemar_exact"


def test_a_pooled_value_that_is_not_lm_eval_s_is_refused(suite):
    cand, base, _, _ = _sides()
    fractions = float(cand.samples["ifeval"][INST].mean())  # the old, wrong pooling: a mean of per-item fractions
    cand.lm_eval["results"]["ifeval"][INST] = fractions
    with pytest.raises(HarnessError, match=r"task 'ifeval' metric 'inst_level_strict_acc,none': the candidate's "
                                           r"per-item scores pool to 0\.\d+, but lm-eval reported"):
        records.paired_metrics(suite(), cand, base, NightlyConfig())
    corpus = {"metric_list": [{"metric": "inst_level_strict_acc", "aggregation": "f1"}]}
    cand.lm_eval["configs"]["ifeval"] = corpus
    with pytest.raises(HarnessError, match=r"lm-eval aggregates it with 'f1', not a mean of per-item scores"):
        records.paired_metrics(suite(), cand, base, NightlyConfig())


# --- end to end -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_nightly_passes_and_fails_as_before_and_logs_lm_eval_s_numbers(quick_pipeline, tmp_path, capsys):
    from test_nightly_e2e import copy_results

    from harness.cli import main
    from harness.tracking import schema, store

    results = copy_results(quick_pipeline, tmp_path)
    ckpt = lambda stage: str(quick_pipeline / "checkpoints" / "embedded" / stage)  # noqa: E731
    nightly = ["nightly", "--suite", "tiny", "--results", str(results), "--set", "eval.limit=40"]
    assert main([*nightly, "--candidate", ckpt("rlvr"), "--baseline", ckpt("base")]) == 0
    assert main([*nightly, "--candidate", ckpt("base"), "--baseline", ckpt("rlvr"), "--set", "metrics=all"]) == 1
    capsys.readouterr()
    runs = store.search_runs(store.tracking_uri(results), "harness", "tags.`harness.kind` = 'nightly'",
                             ["attributes.start_time DESC"])
    run = runs.iloc[0]
    children = store.search_runs(store.tracking_uri(results), "harness")
    evals = children.set_index("run_id")
    cand, base = (evals.loc[run[schema.column(f"{side}_eval_run")]] for side in ("candidate", "baseline"))
    table = store.read(run["run_id"], schema.NIGHTLY_COMPARISONS, results)
    assert "inst_level_strict_acc,none" in set(table.metric)
    for key in [k[len("metrics.delta/"):] for k in run.index if k.startswith("metrics.delta/") and pd.notna(run[k])]:
        assert run[f"metrics.{key}"] == pytest.approx(cand[f"metrics.{key}"], abs=1e-9), key
        assert run[f"metrics.{schema.nightly_metric('baseline', key)}"] == pytest.approx(base[f"metrics.{key}"],
                                                                                        abs=1e-9), key
