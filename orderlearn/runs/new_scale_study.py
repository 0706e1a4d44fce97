"""The new-scale protocols of ``orderlearn compare --new-scale``: trained runs scored on a scale, or a
population, they never saw, from N references, by both routes, over K seeded draws per N.

Each finished run (one fold) is loaded once. Its references come from training faces (never its
validation faces, never test faces), scored on the protocol's scale; its test faces are scored
against each draw (:func:`orderlearn.runs.new_scale.score_on_new_scale`):

- ``share``: the same faces under a definition of the score the model was not trained on, the
  percentage of the raters who gave 4 or 5 (``data.score_definition: high_share``; needs the
  rating histograms of SCUT-FBP5500 or the synthetic layout). References from the run's training
  faces, test faces the run's own, both on that scale. The run's own routes are in other units,
  so only the routes re-anchored on the references are comparable.
- ``target-groups``: a run trained on some groups and tested on others (``data.train_groups`` /
  ``data.test_groups``: the cross-group protocol; ``data.group_by: gender`` for ages) takes its
  references from the test groups' training faces. The scale is the same, so the run's own
  routes (the training-group bank, the direct score unmapped) are reported beside them.

Routes of a row: ``order-learned`` (the comparator against the N references, self-calibrated on
them), ``direct mapped`` (the run's direct score mapped by a monotone fit on the same N
references), ``fused`` (the comparator against the N references with each face's mapped direct
score as its prior; from 10 references), and for ``target-groups`` the N-free
``order-learned (training bank)`` and ``direct``.
Nothing here is chosen on test: the checkpoint and scorer are the run's (validation-chosen), the
calibration and the map are fitted on the references alone.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from orderlearn.config import DataConfig, load_config
from orderlearn.data.splits import load_test, load_training
from orderlearn.errors import ConfigError, DataError
from orderlearn.report.metrics import score_metrics
from orderlearn.report.new_scale_table import DIRECT_MAPPED, FUSED, ORDER_LEARNED
from orderlearn.runs.loaded import LoadedRun
from orderlearn.runs.new_scale import NewScaleScores, direct_scores, route_values, score_draws

PROTOCOLS = ("share", "target-groups")
SIZES = (10, 25, 50, 100, 200)
DRAWS = 5

TRAINING_BANK, DIRECT = "order-learned (training bank)", "direct"
ROUTE_NAMES = {"order_learned": ORDER_LEARNED, "direct_mapped": DIRECT_MAPPED, "fused": FUSED}  # route_values' keys


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--new-scale: unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}")


def protocol_data(data: DataConfig, protocol: str, run: Path) -> tuple[DataConfig, DataConfig]:
    """(where the references come from, where the test faces come from) for ``protocol``."""
    check_protocol(protocol)
    if protocol == "share":
        share = dataclasses.replace(data, score_definition="high_share", score_low=0.0, score_high=100.0)
        return share, share
    if not data.test_groups:
        raise ConfigError(f"--new-scale target-groups: {run / 'config.yaml'}: data.test_groups is not set, so the run "
                          f"was tested on the groups it trained on; the protocol needs a cross-group run")
    return dataclasses.replace(data, train_groups=list(data.test_groups)), data


def check_study(runs: Sequence[Path], protocol: str) -> None:
    """Refuse, before any data or model is read, a run the protocol cannot use: a regressor run (no
    comparator to re-anchor), a same-groups run for ``target-groups``, a folder that is not a run."""
    check_protocol(protocol)
    for run in runs:
        config_file = Path(run) / "config.yaml"
        if not config_file.is_file():
            raise DataError(f"{run} is not an `orderlearn run` folder (no config.yaml)")
        config = load_config(config_file)
        if config.task != "comparator":
            raise ConfigError(f"--new-scale: {config_file}: task is {config.task}; the protocols re-anchor a "
                              f"comparator's bank route beside its direct route (train a comparator with its direct head)")
        protocol_data(config.data, protocol, Path(run))


def what_was_fitted(new: NewScaleScores, key: str) -> str:
    """The draws CSV's ``calibration`` cell of a route: what was fitted on the references for it."""
    if key == "order_learned":
        return "+".join(new.calibration.get("fitted", []))
    if key == "direct_mapped":
        return new.direct_map.kind if new.direct_map is not None else ""
    return f"prior std {new.calibration['fused']['prior_std']:.4g}"


def study_run(run: Path, protocol: str, sizes: Sequence[int] = SIZES, draws: int = DRAWS, seed: int = 0,
              progress: Optional[Callable[[str], None]] = None) -> list[dict[str, Any]]:
    """One row per (route, N, draw) for the finished run in ``run`` (module docstring); N-free routes
    have ``references`` None and ``draw`` None."""
    check_study([run], protocol)
    loaded = LoadedRun.from_run(run)
    reference_data, test_data = protocol_data(loaded.config.data, protocol, run)
    pool, test = load_training(reference_data).train, load_test(test_data)
    too_many = [n for n in sizes if n > len(pool)]
    if too_many:
        raise ConfigError(f"--sizes: {too_many[0]} references asked, {run} has {len(pool)} training faces to draw from")
    truth = [s.score for s in test]
    cs = loaded.config.cs_thresholds if protocol == "target-groups" else []  # CS(t) is in the run's units
    base = {"run": str(run), "method": loaded.config.name, "fold": loaded.config.data.split, "protocol": protocol}
    rows: list[dict[str, Any]] = []

    def add(route: str, values: Sequence[float], references: Optional[int], draw: Optional[int],
            extra: Optional[dict[str, Any]] = None) -> None:
        rows.append({**base, "route": route, "references": references, "draw": draw,
                     **score_metrics(list(values), truth, cs), **(extra or {})})

    direct = direct_scores(loaded, test, "test")  # the same for every draw
    if protocol == "target-groups":
        add(TRAINING_BANK, loaded.score(test, "test")[1].value.tolist(), None, None)
        if direct is not None:
            add(DIRECT, direct.tolist(), None, None)
    say = None if progress is None else (lambda line: progress(f"{run.name}: {line}"))
    for size in sizes:
        for draw, new in score_draws(loaded, pool, test, size, draws, seed, "test", say, direct):
            for key, values in route_values(new).items():
                add(ROUTE_NAMES[key], values, size, draw, {"calibration": what_was_fitted(new, key)})
    return rows
