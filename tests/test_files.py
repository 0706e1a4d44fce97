"""The one JSON writer (atomic_write_json): the bytes each former writer produced, and atomicity."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from orderlearn.files import atomic_write_json

PAYLOAD = {"b": 1.5, "a": [1, 2], "nan": math.nan, "path": Path("x/y.jpg")}


def test_defaults_match_the_former_writer_of_manifests(tmp_path):
    out = atomic_write_json(tmp_path / "sub" / "m.json", PAYLOAD)
    assert out.read_text() == json.dumps(PAYLOAD, indent=1, default=str)
    assert json.loads(out.read_text())["path"] == "x/y.jpg" and math.isnan(json.loads(out.read_text())["nan"])


def test_metrics_write_numpy_scalars_as_numbers(tmp_path):
    payload = {"mae": np.float32(0.25), "n": 3}
    out = atomic_write_json(tmp_path / "metrics.json", payload, default=float)
    assert out.read_text() == json.dumps(payload, indent=1, default=float)
    assert json.loads(out.read_text()) == {"mae": 0.25, "n": 3}


def test_default_none_refuses_what_json_cannot_write(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "bank.json", {"path": Path("a")}, default=None)
    assert not list(tmp_path.iterdir())  # nothing half-written, no temporary file left


def test_sorted_keys_and_a_final_newline_as_the_synthetic_meta_file(tmp_path):
    meta = {"version": "1.0", "files": {"b": 2, "a": 1}}
    out = atomic_write_json(tmp_path / "meta.json", meta, sort_keys=True, default=None, newline=True)
    assert out.read_bytes() == (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode()


def test_sync_and_indent(tmp_path):
    out = atomic_write_json(tmp_path / "state.json", {"a": 1}, sync=True, indent=None)
    assert out.read_text() == '{"a": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_replaces_an_existing_file_whole(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    atomic_write_json(target, [1])
    assert json.loads(target.read_text()) == [1]
