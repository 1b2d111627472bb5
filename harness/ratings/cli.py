"""`harness elo`, `harness rate` and `harness winrate`: the ratings calculator, leaderboards and AlpacaEval metrics.

    harness elo prob 100 200 300            # win probability for each rating margin (0.640 0.760 0.849)
    harness elo margin 0.64 0.75            # rating margin for each win probability
    harness elo matrix ratings.json         # predicted win-probability matrix (or MODEL=RATING ...)
    harness rate battles.jsonl --bootstrap 1000 --seed 0 --anchor gpt-4o=1200 --format json
    harness winrate annotations/*.json --difficulty instruction_difficulty.csv --baseline-outputs gpt4_1106_preview.json

Only argparse is imported here; numpy, pandas and friends load inside the handlers.
"""

from __future__ import annotations

import argparse

from harness.arguments import count as _count
import sys

_FORMATS = ("table", "csv", "markdown", "json")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number (valid: > 0)")
    return value


def _odds_base(text: str) -> float:
    value = _number(text)
    if value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid odds base (valid: > 1)")
    return value


def _gamed(text: str) -> tuple[str, float | None]:
    path, sep, rate = text.rpartition("=")
    if not sep:
        return text, None
    value = _number(rate)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r}: the win rate must be in [0, 100] (percent)")
    return path, value


def _family(text: str) -> tuple[str, str]:
    model, sep, family = text.rpartition("=")
    if not sep or not model or not family:
        raise argparse.ArgumentTypeError(f"expected MODEL=FAMILY, got {text!r}")
    return model, family


def _at_least_one(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (valid: >= 1)")
    return value


def _anchor(text: str) -> tuple[str, float]:
    model, sep, rating = text.rpartition("=")
    if not sep or not model:
        raise argparse.ArgumentTypeError(f"expected MODEL=RATING, got {text!r}")
    return model, _number(rating)


def _scale_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=_positive, default=400.0, help="rating points per BASE-fold odds (default 400)")
    p.add_argument("--base", type=_odds_base, default=10.0, help="odds base, > 1 (default 10)")


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=_FORMATS, default="table", help="output format (default table)")
    p.add_argument("--output", metavar="FILE", help="also write the output to FILE")


def _mlflow_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--mlflow", action="store_true", help=f"log {what} to MLflow")
    p.add_argument("--experiment", default="ratings", help="MLflow experiment (default ratings)")
    p.add_argument("--run-name", help="MLflow run name (default: the command and first input)")
    p.add_argument("--results", metavar="DIR", help="results folder holding the default MLflow store (default results)")


def add_parsers(sub) -> None:
    """Register `elo`, `rate` and `winrate` on `sub` (argparse subparsers)."""
    elo = sub.add_parser("elo", help="Elo-scale calculator: margins ↔ win probabilities, win-probability matrix")
    elo_sub = elo.add_subparsers(dest="elo_command", required=True, metavar="{prob,margin,matrix}")
    p = elo_sub.add_parser("prob", help="win probability for each rating margin")
    p.add_argument("margins", nargs="+", type=_number, metavar="D", help="rating margin(s)")
    _scale_args(p)
    p.set_defaults(func=_elo_prob)
    p = elo_sub.add_parser("margin", help="rating margin for each win probability")
    p.add_argument("probs", nargs="+", type=_number, metavar="P", help="win probability(ies) in (0, 1)")
    _scale_args(p)
    p.set_defaults(func=_elo_margin)
    p = elo_sub.add_parser("matrix", help="predicted win-probability matrix from ratings")
    p.add_argument("ratings", nargs="+", metavar="RATINGS",
                   help="a ratings file from `harness rate` (.json or .csv, columns model and rating), "
                        "or MODEL=RATING pairs")
    _scale_args(p)
    _output_args(p)
    p.set_defaults(func=_elo_matrix)

    p = sub.add_parser(
        "rate",
        help="Bradley-Terry ratings with bootstrap CIs from battle files",
        description="Rate models from Chatbot Arena-style battles (JSON, JSONL, Parquet or CSV with model_a, "
        "model_b, winner in {model_a, model_b, tie, tie (bothbad)}). Ties count half a win each way.",
    )
    p.add_argument("battles", nargs="+", metavar="BATTLES", help="battle file(s)")
    p.add_argument("--bootstrap", type=_count, default=1000, metavar="N",
                   help="bootstrap rounds (default 1000; 0 = none)")
    p.add_argument("--seed", type=_count, default=0, help="bootstrap seed, >= 0 (default 0)")
    p.add_argument("--level", type=_number, default=0.95, help="confidence level of the percentile CIs (default 0.95)")
    p.add_argument("--anchor", type=_anchor, metavar="MODEL=RATING", help="fix one model's rating")
    p.add_argument("--l2", type=_number, default=0.0, help="L2 penalty on log-odds ratings (default 0)")
    p.add_argument("--init", type=_number, default=1000.0, help="mean rating when not anchored (default 1000)")
    _scale_args(p)
    p.add_argument("--style", action="store_true",
                   help="add style-controlled ratings (needs len_a/len_b or conv_metadata in the battles)")
    p.add_argument("--scoring", choices=("battles", "arena-hard"), default="battles",
                   help="battles = each row is one battle (default); arena-hard = harness arena records "
                        "(verdict_ab, verdict_ba) scored as arena-hard-auto does: each position game a battle, a "
                        "strong verdict (>>) counted --strong-weight times")
    p.add_argument("--strong-weight", type=_at_least_one, default=3, metavar="N",
                   help="battles per strong verdict with --scoring arena-hard, >= 1 (default 3, arena-hard-auto's)")
    p.add_argument("--cluster", default="auto", metavar="COLUMN",
                   help="cluster the sandwich standard errors by this column; auto (default) = prompt_id or "
                        "question_id when present; none = every battle on its own")
    p.add_argument("--method", choices=("bt", "online-elo"), default="bt",
                   help="bt = Bradley-Terry (default); online-elo = sequential Elo, order-dependent, no CIs")
    p.add_argument("--k", type=_positive, default=4.0, help="online Elo step, > 0 (default 4)")
    p.add_argument("--plots", metavar="DIR", help="write ratings.png and win_prob.png to DIR")
    _output_args(p)
    _mlflow_args(p, "ratings, CIs, matrices, plots and the leaderboard")
    p.set_defaults(func=_rate)

    p = sub.add_parser(
        "winrate",
        help="AlpacaEval win rate, standard error and length-controlled win rate from annotations.json files",
    )
    p.add_argument("annotations", nargs="+", metavar="ANNOTATIONS.json", help="AlpacaEval annotations file(s)")
    p.add_argument("--difficulty", metavar="CSV",
                   help="instruction difficulty (index,instruction_difficulty with --baseline-outputs naming the "
                        "rows, or instruction,instruction_difficulty); default: estimated jointly")
    p.add_argument("--baseline-outputs", metavar="OUTPUTS.json",
                   help="the baseline's AlpacaEval outputs (e.g. model_outputs/gpt4_1106_preview.json): AlpacaEval's "
                        "instruction order for an index-only difficulty file, the baseline's lengths for --gamed")
    p.add_argument("--gamed", action="append", type=_gamed, default=[], metavar="OUTPUTS.json[=WIN_RATE]",
                   help="a length-gamed baseline's outputs regularising the LC GLM (AlpacaEval: "
                        "gpt4_1106_preview_concise and _verbose); =WIN_RATE: a constant preference at that win rate "
                        "(percent), else AlpacaEval's published GLM weights for it; repeatable")
    p.add_argument("--drop-missing", action="store_true", help="leave out annotations without a preference")
    p.add_argument("--labels", metavar="FILE",
                   help="human labels (prompt_id or instruction, model_a, model_b, winner; JSON, JSONL, CSV or "
                        "Parquet): the annotator's accuracy and Cohen's kappa against them")
    p.add_argument("--judge-family", metavar="FAMILY",
                   help="the annotator's model family; with --family, its self-preference statistics")
    p.add_argument("--family", action="append", type=_family, default=[], metavar="MODEL=FAMILY",
                   help="a generator's model family (the baseline's too); repeatable")
    _output_args(p)
    _mlflow_args(p, "win rates, the judge's reliability and the leaderboard")
    p.set_defaults(func=_winrate)


def _emit(text: str, output: str | None) -> None:
    print(text)
    if output:  # checked writable before any work (harness.cli); written all or nothing
        from harness import storage

        storage.write_text(output, text + "\n", "--output file")


def _elo_prob(args: argparse.Namespace) -> int:
    from harness.ratings.elo import win_prob

    for d in args.margins:
        print(f"{d:g} -> {win_prob(d, scale=args.scale, base=args.base):.3f}")
    return 0


def _elo_margin(args: argparse.Namespace) -> int:
    from harness.ratings.elo import margin_for

    for p in args.probs:
        print(f"{p:g} -> {margin_for(p, scale=args.scale, base=args.base):.1f}")
    return 0


def _read_ratings(items: list[str]) -> dict[str, float]:
    from pathlib import Path

    import pandas as pd

    from harness.errors import HarnessError

    if len(items) == 1 and "=" not in items[0]:
        path = Path(items[0])
        if not path.is_file():
            raise HarnessError(f"{path}: no such ratings file (or give MODEL=RATING pairs)")
        try:
            frame = pd.read_json(path) if path.suffix.lower() == ".json" else pd.read_csv(path)
        except ValueError as err:
            raise HarnessError(f"{path}: cannot read ratings ({err})") from None
        missing = [c for c in ("model", "rating") if c not in frame.columns]
        if missing:
            raise HarnessError(f"{path}: missing column(s) {', '.join(missing)}; expected `harness rate` output")
        values = pd.to_numeric(frame["rating"], errors="coerce")
        if values.isna().any():
            row = int(values.isna().to_numpy().nonzero()[0][0]) + 1
            raise HarnessError(f"{path}: row {row}: rating is not a number")
        models = frame["model"].astype(str)
        if models.duplicated().any():
            row = int(models.duplicated().to_numpy().nonzero()[0][0]) + 1
            raise HarnessError(f"{path}: row {row}: model {models.iloc[row - 1]!r} is rated twice")
        return dict(zip(models, values.astype(float)))
    out = {}
    for item in items:
        try:
            model, value = _anchor(item)
        except argparse.ArgumentTypeError as err:
            raise HarnessError(f"ratings: {err}") from None
        if model in out:
            raise HarnessError(f"ratings: model {model!r} is given twice ({model}={out[model]:g} and {item})")
        out[model] = value
    return out


def _elo_matrix(args: argparse.Namespace) -> int:
    from harness.ratings.elo import win_prob_matrix
    from harness.ratings.report import render

    ratings = _read_ratings(args.ratings)
    matrix = win_prob_matrix(dict(sorted(ratings.items(), key=lambda kv: -kv[1])), scale=args.scale, base=args.base)
    _emit(render(matrix.reset_index(names="model"), args.format, digits=3), args.output)
    return 0


def _rate(args: argparse.Namespace) -> int:
    import warnings

    from harness.ratings.battles import read_battles

    battles = read_battles(args.battles)
    if args.scoring == "arena-hard":
        from harness.ratings.arena_hard import expand_verdicts

        battles = expand_verdicts(battles, strong_weight=args.strong_weight, source=", ".join(args.battles))
    anchor = dict([args.anchor]) if args.anchor else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.method == "online-elo":
            board = _online_board(battles, args)
        else:
            from harness.ratings.tables import leaderboard

            board = leaderboard(battles, rounds=args.bootstrap, seed=args.seed, level=args.level, anchor=anchor,
                                l2=args.l2, scale=args.scale, base=args.base, init=args.init, style=args.style,
                                cluster=None if args.cluster == "none" else args.cluster)
    for w in caught:
        print(f"harness: warning: {w.message}", file=sys.stderr)
    caption = _caption(board, battles, args)
    digits = {"win_rate": 3, "avg_win_prob": 3}
    text = _render(board, args.format, digits)
    if args.format in ("table", "markdown"):
        text = caption + "\n\n" + text
    else:
        print(caption, file=sys.stderr)
    _emit(text, args.output)
    if args.plots or args.mlflow:
        figures, matrices = _rate_figures(board, battles, args)
        if args.plots:
            from pathlib import Path

            Path(args.plots).mkdir(parents=True, exist_ok=True)
            for name, fig in figures.items():
                fig.savefig(Path(args.plots) / f"{name}.png", dpi=120)
        if args.mlflow:
            _log(args, "rate", board, matrices, figures)
    return 0


def _render(board, fmt: str, digits) -> str:
    from harness.ratings.report import render

    return render(board, fmt, digits=digits)


def _caption(board, battles, args: argparse.Namespace) -> str:
    head = f"{len(battles)} battles, {len(board)} models"
    if args.method == "online-elo":
        return f"{head}; online Elo (K={args.k:g}; order-dependent, no intervals)"
    if args.bootstrap > 0:
        ci = f"{args.level * 100:g}% percentile bootstrap CIs ({args.bootstrap} rounds, seed {args.seed})"
    else:
        ci = "no bootstrap (ranks from point ratings)"
    anchor = f"anchor {args.anchor[0]}={args.anchor[1]:g}" if args.anchor else f"mean rating {args.init:g}"
    style = ""
    if args.style:
        coef = ", ".join(f"{k} {v:+.1f}" for k, v in board.attrs.get("style_coefficients", {}).items())
        style = f"; style_* = style-controlled (rating points per SD of each style covariate: {coef})"
    scoring = (f"; Arena-Hard scoring (each position game a battle, >> = {args.strong_weight} battles)"
               if args.scoring == "arena-hard" else "")
    se = ""
    if "se_cluster" in board.attrs:
        cluster = board.attrs["se_cluster"]
        by = "per battle" if cluster == "none" else f"clustered by {cluster}, {board.attrs['se_clusters']} clusters"
        se = f"; se = sandwich standard error ({by}); rank_ci = {board.attrs['rank_ci_method']}"
    return (f"{head}{scoring}; Bradley-Terry (ties = half a win), scale {args.scale:g}, base {args.base:g}, {anchor}; "
            f"{ci}{se}{style}")


def _online_board(battles, args: argparse.Namespace):
    import numpy as np
    import pandas as pd

    from harness.ratings.intervals import ci_ranks
    from harness.ratings.elo import online_elo
    from harness.ratings.tables import model_totals

    ratings = online_elo(battles, k=args.k, scale=args.scale, base=args.base, init=args.init)
    totals = model_totals(battles).loc[ratings.index].reset_index(drop=True)
    board = pd.DataFrame({"rank": ci_ranks(ratings.to_numpy(), ratings.to_numpy()), "model": ratings.index,
                          "rating": ratings.to_numpy(), "ci_low": np.nan, "ci_high": np.nan})
    return pd.concat([board, totals], axis=1)


def _rate_figures(board, battles, args: argparse.Namespace):
    from harness.ratings.elo import win_prob_matrix
    from harness.ratings.tables import battle_count_matrix, empirical_win_rate_matrix
    from harness.report.figures import ratings_figure, win_matrix_figure

    ratings = board.set_index("model")["rating"]
    predicted = win_prob_matrix(ratings, scale=args.scale, base=args.base)
    order = list(ratings.index)
    matrices = {
        "win_prob": predicted,
        "empirical_win_rate": empirical_win_rate_matrix(battles).loc[order, order],
        "battle_counts": battle_count_matrix(battles).loc[order, order],
    }
    figures = {"ratings": ratings_figure(board), "win_prob": win_matrix_figure(predicted)}
    if "style_rating" in board.columns:
        figures["style_ratings"] = ratings_figure(board, title="Style-controlled ratings", column="style_rating")
    return figures, matrices


def _log(args: argparse.Namespace, command: str, board, matrices, figures,
         metrics: dict[str, float] | None = None) -> None:
    from pathlib import Path

    from harness.provenance import tags as provenance_tags
    from harness.ratings.report import log_ratings
    from harness.tracking import schema, store

    inputs = list(getattr(args, "battles", None) or getattr(args, "annotations", []))
    params = {k: v for k, v in vars(args).items()
              if k not in ("func", "mlflow", "experiment", "run_name", "results", "output", "plots", "format")}
    params.update({k: v for k, v in board.attrs.items() if not isinstance(v, dict)})
    name = args.run_name or schema.ratings_run_name(command, Path(inputs[0]).stem)
    tags = {**provenance_tags(getattr(args, "seed", None), with_device=False), **schema.tags(command=command)}
    with store.run(name, schema.Kind.RATINGS, experiment=args.experiment, results_dir=args.results, tags=tags) as run:
        log_ratings(run, board, params=params, matrices=matrices, figures=figures, prefix=command)
        if metrics:
            run.log_metrics(metrics)
        extra = {k: v for k, v in board.attrs.items() if isinstance(v, dict) and v}
        if extra:
            run.write(schema.ratings_details(command), extra)
    print(f"harness: logged to MLflow run {run.run_id} (experiment {args.experiment})", file=sys.stderr)


def _winrate(args: argparse.Namespace) -> int:
    import warnings

    from harness.errors import HarnessError
    from harness.ratings.alpaca import alpaca_winrate

    if bool(args.judge_family) != bool(args.family):
        raise HarnessError("--judge-family and --family go together: the annotator's family and the generators' "
                           "(e.g. --judge-family gpt4 --family gpt4_1106_preview=gpt4)")
    labels = None
    if args.labels:
        from harness.ratings.reliability import read_labels

        labels = read_labels(args.labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = alpaca_winrate(args.annotations, difficulty=args.difficulty, baseline_outputs=args.baseline_outputs,
                               gamed=args.gamed, drop_missing=args.drop_missing)
    for w in caught:
        print(f"harness: warning: {w.message}", file=sys.stderr)
    caption = (f"AlpacaEval metrics against {', '.join(sorted(set(table['baseline'])))} (percent); "
               f"LC difficulty: {table.attrs['difficulty']}; gamed baselines: {table.attrs['gamed']}")
    text = _render(table, args.format, {"standard_error": 2, "win_rate": 2, "discrete_win_rate": 2,
                                             "length_controlled_winrate": 2, "lc_standard_error": 2})
    reliability, judge = _annotator_reliability(args, labels)
    lines = _reliability_lines(reliability, judge)
    if args.format in ("table", "markdown"):
        text = caption + "\n\n" + text + "\n\n" + lines
    else:
        print(caption, file=sys.stderr)
        print(lines, file=sys.stderr)
    _emit(text, args.output)
    if args.mlflow:
        from harness.report.figures import ratings_figure
        from harness.tracking import schema

        view = table.assign(rating=table["length_controlled_winrate"])
        figures = {"lc_winrate": ratings_figure(view, title="Length-controlled win rate (%)")}
        table.attrs[schema.judge_param("model")] = judge
        _log(args, "winrate", table, {}, figures, metrics=reliability.metrics())
    return 0


def _annotator_reliability(args: argparse.Namespace, labels):
    """The annotator's reliability from the annotations (read again: the win rates above checked them) and its
    name (the files' ``annotator`` field)."""
    from harness.ratings.alpaca import read_annotations
    from harness.ratings.reliability import annotations_reliability

    frames = [read_annotations(path, drop_missing=args.drop_missing) for path in args.annotations]
    names = sorted({str(a) for f in frames if "annotator" in f.columns for a in f["annotator"].dropna().unique()})
    report = annotations_reliability(frames, judge_family=args.judge_family, families=dict(args.family),
                                     labels=labels)
    for note in report.notes:
        print(f"harness: warning: judge reliability: {note}", file=sys.stderr)
    return report, ", ".join(names) or "unknown"


def _reliability_lines(report, judge: str) -> str:
    from harness.report.tables import render

    missing = report.missing_text()
    table = render(report.display(), {"statistic": "statistic", "estimate": f"estimate [{report.level:.0%} CI]",
                                      "n": "n"}, align={"estimate": "right"})
    return (f"Judge reliability (annotator {judge}; {report.level:.0%} CIs clustered by instruction)\n{table}"
            + (f"\n{missing}" if missing else ""))
