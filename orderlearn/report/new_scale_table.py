"""The tables and the curve of ``orderlearn compare --new-scale``: the rows of the new-scale
protocols (:mod:`orderlearn.runs.new_scale_study`, one per run, route, N and draw) summarised
per route and N as mean ± std over folds × draws, the verdict of order-learned against mapped
direct at each N, and score quality against N as a picture.

The verdict is paired: for each (fold, draw) the routes score the same test faces against the
same N references, so the difference of a bank route's metric (order-learned, and fused: the
same comparisons with the mapped direct score as prior) and the mapped direct route's is taken
per (fold, draw) and compared with its own spread. A route wins at an N only when the mean
difference exceeds one std of those paired differences; otherwise the two are "level".
"""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from orderlearn.errors import DataError
from orderlearn.files import atomic_write_json
from orderlearn.report.markdown import markdown_table
from orderlearn.report.metrics import extra_metric_names
from orderlearn.report.tables import _cell, mean_std

ORDER_LEARNED, DIRECT_MAPPED, FUSED = "order-learned", "direct mapped", "fused"
BANK_ROUTES = (ORDER_LEARNED, FUSED)  # each judged against the mapped direct route
METRICS = ("pc", "mae", "rmse")
HIGHER_IS_BETTER = {"pc": True, "mae": False, "rmse": False}


def metric_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """PC, MAE, RMSE, then the CS(t) every row has (ages)."""
    extras = [m for m in extra_metric_names(*rows) if m.startswith("cs") and all(m in r for r in rows)]
    return [*METRICS, *extras]


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, route, N): each metric's mean ± std over folds × draws."""
    if not rows:
        raise DataError("--new-scale: no rows to summarise")
    metrics = metric_names(rows)
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["protocol"], r["route"], r["references"])].append(r)
    summary = []
    for (method, protocol, route, references), members in groups.items():
        row: dict[str, Any] = {"method": method, "protocol": protocol, "route": route,
                               "references": "-" if references is None else references,
                               "folds": len({m["fold"] for m in members}), "draws": len(members),
                               "n_images": int(sum(m["n"] for m in members))}
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std([x[m] for x in members])
        summary.append(row)
    order = {ORDER_LEARNED: 0, FUSED: 1, DIRECT_MAPPED: 2}
    return sorted(summary, key=lambda r: (r["method"], r["references"] == "-", r["references"] if r["references"] != "-" else 0,
                                          order.get(r["route"], 3), r["route"]))


def verdicts(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, N, bank route) and metric: the bank route (order-learned, fused) minus direct
    mapped, paired by (fold, draw)."""
    paired: dict[tuple, dict[str, dict[tuple, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["route"] in (*BANK_ROUTES, DIRECT_MAPPED):
            paired[(r["method"], r["references"])][r["route"]][(r["fold"], r["draw"])] = r
    out = []
    for (method, references), routes in sorted(paired.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        for route in BANK_ROUTES:
            keys = sorted(set(routes.get(route, {})) & set(routes.get(DIRECT_MAPPED, {})))
            if not keys:
                continue
            row: dict[str, Any] = {"method": method, "references": references, "route": route, "pairs": len(keys)}
            for m in ("pc", "mae"):
                diffs = [routes[route][k][m] - routes[DIRECT_MAPPED][k][m] for k in keys]
                mean, std = mean_std(diffs)
                better = mean if HIGHER_IS_BETTER[m] else -mean
                spread = 0.0 if math.isnan(std) else std
                row[f"{m}_diff_mean"], row[f"{m}_diff_std"] = mean, std
                row[f"{m}_verdict"] = (route if better > spread else DIRECT_MAPPED if -better > spread else "level")
            out.append(row)
    return out


def markdown_report(summary: Sequence[dict[str, Any]], verdict_rows: Sequence[dict[str, Any]], command: str) -> str:
    metrics = [m.removesuffix("_mean") for m in summary[0] if m.endswith("_mean")]
    shown = [{**r, **{m: _cell(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics}} for r in summary]
    table = markdown_table(shown, ["method", "route", "references", *metrics, "folds", "draws", "n_images"])
    verdict_table = markdown_table(
        [{**v, "PC: route − mapped": _cell(v["pc_diff_mean"], v["pc_diff_std"]), "PC verdict": v["pc_verdict"],
          "MAE: route − mapped": _cell(v["mae_diff_mean"], v["mae_diff_std"]), "MAE verdict": v["mae_verdict"]}
         for v in verdict_rows],
        ["method", "references", "route", "pairs", "PC: route − mapped", "PC verdict", "MAE: route − mapped",
         "MAE verdict"])
    protocol = summary[0]["protocol"]
    return (f"# New scale ({protocol}): order-learned and fused vs mapped direct against N references\n\n"
            f"Made by `{command}`.\n\n"
            "Mean ± sample std (ddof = 1) over folds × draws. `references` '-': a route that does not use the "
            "new references (the run's own bank or its direct score unmapped).\n\n" + table + "\n\n"
            "Paired by (fold, draw): a route wins at N only when the mean difference exceeds one std of "
            "the paired differences.\n\n" + verdict_table + "\n")


def curve_plot(path: Path, summary: Sequence[dict[str, Any]]) -> Path:
    """PC and MAE against N (log axis), one line per route with its std as error bars; the N-free
    routes as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    routes = list(dict.fromkeys((r["method"], r["route"]) for r in summary))
    sizes = sorted({r["references"] for r in summary if r["references"] != "-"})
    for ax, metric, label in zip(axes, ("pc", "mae"), ("PC (higher is better)", "MAE (lower is better)")):
        for method, route in routes:
            mine = [r for r in summary if r["method"] == method and r["route"] == route]
            name = route if len({m for m, _ in routes}) == 1 else f"{method}: {route}"
            if mine[0]["references"] == "-":
                ax.axhline(mine[0][f"{metric}_mean"], ls="--", lw=1, color="grey" if route == "direct" else "black",
                           label=name)
                continue
            xs = [r["references"] for r in mine]
            ys = [r[f"{metric}_mean"] for r in mine]
            es = [0.0 if math.isnan(r[f"{metric}_std"]) else r[f"{metric}_std"] for r in mine]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set(xlabel="references N", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"new scale ({summary[0]['protocol']}): mean ± std over folds × draws")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_new_scale_table(rows: Sequence[dict[str, Any]], out: Path, command: str) -> dict[str, Any]:
    """``new_scale.md``, ``new_scale.csv`` (the summary), ``new_scale_draws.csv`` (every row),
    ``new_scale.json`` and ``new_scale.png`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary, verdict_rows = summarise(rows), verdicts(rows)
    markdown = markdown_report(summary, verdict_rows, command)
    (out / "new_scale.md").write_text(markdown)
    for name, table in (("new_scale.csv", summary), ("new_scale_draws.csv", list(rows))):
        columns = list(dict.fromkeys(k for r in table for k in r))
        with (out / name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(table)
    plot = curve_plot(out / "new_scale.png", summary)
    payload = {"command": command, "summary": summary, "verdicts": verdict_rows, "rows": list(rows), "plot": str(plot)}
    atomic_write_json(out / "new_scale.json", payload, default=float)
    return {**payload, "markdown": markdown}
