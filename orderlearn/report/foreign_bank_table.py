"""The ``bank.from`` section of a run's results: its draws summarised, and its table in report.md.

:mod:`orderlearn.runs.foreign_bank` scores a dataset's test faces against K draws of N references
by two routes; here each route's metrics become mean ± std over the draws (the spread a reader
needs to tell two routes apart: one draw of N references is one sample of the references one
could have had), and the entry becomes a few lines of markdown under the run's own table.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from orderlearn.report.markdown import markdown_table
from orderlearn.report.new_scale_table import metric_names
from orderlearn.report.tables import mean_std

ROUTES = {  # results key -> the route's name in the table
    "order_learned": "order-learned (N references, self-calibrated)",
    "direct_mapped": "direct mapped (monotone fit on the N references)",
    "fused": "fused (N references, mapped direct score as prior)",
}
RUN_ROUTES = {"order_learned": "order-learned (the run's own bank)", "direct": "direct (unmapped)"}


def summarise_draws(per_draw: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Route -> metric -> ``{"mean", "std"}`` over the draws (std over one draw: NaN); the metrics
    are PC, MAE, RMSE and the CS(t) every draw has."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for route in ROUTES:
        rows = [draw[route] for draw in per_draw if route in draw]
        if rows:
            summary[route] = {}
            for metric in metric_names(rows):
                mean, std = mean_std([r[metric] for r in rows])
                summary[route][metric] = {"mean": mean, "std": std}
    return summary


def plus_minus(mean: float, std: float) -> str:
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def foreign_bank_markdown(section: dict[str, Any]) -> str:
    """The report's ``bank.from`` section: where the references came from, and per route PC, MAE,
    RMSE (and CS(t)) as mean ± std over the draws, then the run's own routes on the same faces
    where they share its scale."""
    data = section["dataset"]
    groups = "".join(f", {key} {data[key]}" for key in ("train_groups", "test_groups") if data.get(key))
    rows = []
    for route, name in ROUTES.items():
        metrics = section["summary"].get(route)
        if metrics:
            rows.append({"route": name, "draws": section["draws"],
                         **{m: plus_minus(v["mean"], v["std"]) for m, v in metrics.items()}})
    for route, name in RUN_ROUTES.items():
        metrics = section.get("run_routes", {}).get(route)
        if metrics:
            rows.append({"route": name, "draws": "-", **{m: f"{metrics[m]:.4f}" for m in metric_names([metrics])}})
    columns = ["route", *metric_names([section["summary"][r] for r in section["summary"]] or [{}]), "draws"]
    where = " ".join(filter(None, [data["kind"], data.get("root")]))
    seen = section["test_faces_seen_in_training"]
    warning = (f"\n\n{seen} of these test faces are among the run's training or validation faces: their scores "
               "flatter both routes.") if seen else ""
    return (f"\n## Bank from another dataset (bank.from)\n\n"
            f"{section['draws']} seeded draws (bank.seed {section['seed']}) of {section['references']} references from "
            f"{section['pool']} training faces of {where} ({data['split']}, "
            f"{data['score_definition']}{groups}); {section['test_images']} test faces scored on that scale; "
            f"mean ± std over the draws.\n\n{markdown_table(rows, columns)}{warning}\n")
