"""scripts/build_default_model.py: export from a fresh checkout reuses the last export's records of earlier stages."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def build(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("build_default_model", ROOT / "scripts" / "build_default_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not (mod.MODEL_DIR / "config.json").is_file():
        pytest.skip("shipped default model not present")
    shipped = mod._shipped_training()
    # stages as shipped, with shards and run folders that do not exist on this machine
    stages = [(Path(m).name, tmp_path / f"shards{i}", Path(st["recipe"]).name, tmp_path / f"run{i}")
              for i, (m, st) in enumerate(zip(shipped["mixture"]["recipes"], shipped["stages"]))]
    monkeypatch.setattr(mod, "STAGES", stages)
    return mod, shipped


def test_mixture_summary_from_last_export(build):
    mod, shipped = build
    assert mod._mixture_summary() == shipped["mixture"]


def test_mixture_summary_mixes_manifests_and_last_export(build):
    mod, shipped = build
    mix = shipped["mixture"]
    keep = ("name", "path", "kind", "licence", "md5", "records", "bases", "dropped_name", "dropped_kmer", "thinned",
            "probe_records", "val_rows")
    # stage 1's shards are here (its manifest, rebuilt from the record), the later stages' are not
    manifest = {"window": mix["window"], "counts": mix["counts"], "exclusion": mix["exclusion"], "split": mix["split"],
                "sources": [{**{k: s[k] for k in keep}, "weight": s["stage_weights"][0],
                             "train_rows": s["stage_train_rows"][0]} for s in mix["sources"]]}
    shards = mod.STAGES[0][1]
    shards.mkdir()
    (shards / "manifest.json").write_text(json.dumps(manifest))
    assert mod._mixture_summary() == mix
    # a later stage's weight read from its own manifest wins over the record
    manifest2 = {**manifest, "counts": {**mix["counts"], "train": 7},
                 "sources": [{**s, "weight": 9.0, "train_rows": 1} for s in manifest["sources"]]}
    last = mod.STAGES[-1][1]
    last.mkdir()
    (last / "manifest.json").write_text(json.dumps(manifest2))
    got = mod._mixture_summary()
    assert got["stage_train_rows"][-1] == 7 and got["stage_train_rows"][:-1] == mix["stage_train_rows"][:-1]
    assert all(s["stage_weights"][-1] == 9.0 and s["stage_weights"][:-1] == t["stage_weights"][:-1]
               for s, t in zip(got["sources"], mix["sources"]))


def test_missing_stage_without_record_is_an_error(build, tmp_path):
    mod, _ = build
    mod.STAGES = mod.STAGES + [("mixture_stage9.yaml", tmp_path / "s9", "pretrain_stage9.yaml", tmp_path / "r9")]
    with pytest.raises(SystemExit, match="mixture_stage9.yaml"):
        mod._mixture_summary()
