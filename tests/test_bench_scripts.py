"""scripts/bench_precision.py, memory_plan.py and bench_scoring.py at tiny sizes, so that the full runs cannot rot."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from genomod.checkpoint import save_model
from genomod.precision import torchao_version
from tests.model_helpers import tiny_test_model

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCHAO = torchao_version() != "not installed"
pytestmark = pytest.mark.usefixtures("one_thread")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"genomod_script_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- bench_precision ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_precision_tiny(tmp_path):
    """The real BRCA1 loader and reference, a tiny random model, 12 SNVs fast and 4 exact, in subprocesses."""
    save_model(tiny_test_model(0), tmp_path / "model")
    out = tmp_path / "p.json"
    configs = ["bf16"] + (["int8"] if HAS_TORCHAO else [])
    report = _script("bench_precision").main(
        ["--model", str(tmp_path / "model"), "--limit", "12", "--exact-limit", "4", "--window", "64",
         "--threads", "1", "--configs", *configs, "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report, default=str))
    assert report["settings"]["variants"] == 12 and report["threads"] == 1
    assert report["versions"]["torchao"] == torchao_version()
    rows = {r["config"]: r for r in report["results"]}
    assert list(rows) == ["fp32", *configs]  # fp32 always runs first, as the reference
    for name, row in rows.items():
        assert "error" not in row, row
        assert row["fast"]["variants"] == 12 and row["fast"]["scored"] == 12
        assert row["exact"]["variants"] == 4 and row["exact"]["scored"] == 4
        assert row["fast"]["variants_per_s"] > 0 and row["peak_rss_bytes"] > row["weights_bytes"] > 0
        assert row["window"] == 64
        if name != "fp32":
            for mode in ("fast", "exact"):
                r = row[mode]
                assert r["compared"] == row[mode]["scored"]
                assert 0 < r["max_abs_diff"] < 0.1 and r["p99_abs_diff"] <= r["max_abs_diff"]
                assert r["spearman_vs_fp32"] > 0.8 and r["speed_vs_fp32"] > 0
    assert rows["bf16"]["weights_bytes"] < rows["fp32"]["weights_bytes"]
    if HAS_TORCHAO:
        assert rows["int8"]["weights_bytes"] < rows["fp32"]["weights_bytes"]


def test_bench_precision_compare_helpers():
    import numpy as np

    bp = _script("bench_precision")
    ref = np.array([0.0, -1.0, -2.0, np.nan, 0.5])
    got = np.array([0.01, -1.02, -2.0, 1.0, np.nan])
    c = bp.compare(got, ref)
    assert c["compared"] == 3 and math.isclose(c["max_abs_diff"], 0.02, rel_tol=1e-9)
    assert c["spearman_vs_fp32"] == 1.0
    assert bp.compare(np.array([np.nan]), np.array([1.0])) == {"compared": 0}


# ---- memory_plan ------------------------------------------------------------------------------------------
def test_memory_plan_meta_device(tmp_path):
    from genomod.convert.evo2 import evo2_model_config
    from genomod.model import count_parameters

    out = tmp_path / "plan.json"
    report = _script("memory_plan").main(["--out", str(out)])
    assert json.loads(out.read_text())["plan"] == report["plan"]
    rows = {r["config"]: r for r in report["plan"]}
    assert list(rows) == ["1b", "7b", "40b"]
    for name, r in rows.items():
        assert r["parameters"] == r["parameters_analytic"] == count_parameters(evo2_model_config(name))
        b = r["bytes"]
        poles = 2 * r["hidden_size"] * 16 * r["layer_kinds"]["LI"] * 4  # fp32 poles+residues (state 16)
        assert b["float32"] == 4 * r["parameters"]
        assert b["bfloat16"] == 2 * r["parameters"] + poles // 2  # everything bf16 except the fp32 poles
        assert r["int8_over_bf16"] <= 0.55 and b["int8"] < b["bfloat16"] < b["float32"]
    assert 6.4e9 < rows["7b"]["parameters"] < 6.6e9 and 39e9 < rows["40b"]["parameters"] < 42e9
    assert rows["1b"]["parameters"] < rows["7b"]["parameters"]


def test_memory_plan_measure_tiny(tmp_path):
    report = _script("memory_plan").main(
        ["--configs", "tiny", "--measure-config", "tiny", "--measure-layers", "1", "--seqlen", "32",
         "--repeats", "1", "--out", str(tmp_path / "m.json")])
    m = report["measurement"]
    assert set(m["per_kind"]) == {"SE", "MR", "LI", "MHA"}
    assert sum(v["full_depth_count"] for v in m["per_kind"].values()) == m["full_depth_layers"] == 8
    assert all(v["per_layer_s"] >= 0 for v in m["per_kind"].values())
    assert m["full_depth_forward_s_estimate"] >= m["head_s"] and m["full_depth_tokens_per_s_estimate"] > 0


# ---- explore_embed_variants -------------------------------------------------------------------------------
def test_explore_embed_variants_last_block_is_delta_embed():
    """The script's last-block score equals the library's delta_embed (exact mode's forwards, both strands)."""
    import numpy as np

    from genomod.eval.probes import ProbeVariant, score_variants

    rng = np.random.default_rng(3)
    seqs = ["".join(rng.choice(list("ACGT"), 150)) for _ in range(2)]
    variants = [ProbeVariant(r, p, seqs[r][p], a, 0, "g") for r, p in ((0, 10), (0, 75), (1, 140), (1, 75))
                for a in "ACGT" if a != seqs[r][p]]
    model = tiny_test_model(0)
    got = _script("explore_embed_variants").variant_scores(model, variants, seqs, 64)
    want = score_variants(model, variants, seqs, mode="embed", rc=True, window=64, progress=False)
    np.testing.assert_allclose(got[f"block{len(model.blocks) - 1}"], want, rtol=1e-4, atol=1e-4)
    assert set(got) >= {"block0", "span1", "span128", "max", "cos"} and all(v.shape == (12,) for v in got.values())


# ---- bench_scoring --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_scoring_tiny_with_legacy_model_code(tmp_path):
    """bench_scoring on a tiny saved model, exact mode, side by side with the scoring, model and operator code of
    HEAD loaded as the legacy package (the default scope, ``--legacy-model``): the old code holds the same weights,
    so its scores equal the new ones; the JSON names the scope and the bound."""
    import subprocess
    import sys

    save_model(tiny_test_model(0), tmp_path / "model")
    out = tmp_path / "s.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_scoring.py"), "--model", str(tmp_path / "model"),
                    "--window", "64", "--exact-variants", "6", "--repeats", "1", "--modes", "exact",
                    "--naive-check", "2", "--threads", "1", "--legacy-rev", "HEAD", "--out", str(out)], check=True, cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["versions"]["legacy_scope"] == "model and scoring"
    exact = report["modes"]["exact"]
    assert exact["variants"] == 6
    assert exact["max_abs_diff_new_vs_legacy"] < 1e-4 and exact["max_abs_diff_new_vs_naive"] < 1e-4
    assert exact["speedup_over_legacy"] > 0 and 0 < exact["new"]["achieved_over_bound"] < 1
    flops = exact["flops_per_variant"]
    assert flops["executed"]["total"] > flops["minimal"]["total"] > 0


@pytest.mark.slow
def test_bench_scoring_sparse_layout(tmp_path):
    """``--sparse``: both modes score the same spaced SNVs (one ALT each); fast mode's FLOPs per variant are one
    tile forward per touched tile, exact mode's executed work holds the prefix and REF suffix per SNV."""
    import subprocess
    import sys

    save_model(tiny_test_model(0), tmp_path / "model")
    out = tmp_path / "s.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_scoring.py"), "--model", str(tmp_path / "model"),
                    "--window", "64", "--exact-variants", "5", "--sparse", "100", "--repeats", "1", "--naive-check",
                    "2", "--threads", "1", "--legacy-rev", "none", "--out", str(out)], check=True, cwd=ROOT,
                   capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["settings"]["sparse_spacing"] == 100
    exact, fast = report["modes"]["exact"], report["modes"]["fast"]
    assert exact["variants"] == fast["variants"] == report["settings"]["fast_variants"] > 0
    assert exact["max_abs_diff_new_vs_naive"] < 1e-4
    # 100 bases apart with 32-site tiles: every SNV has a tile forward of its own
    from genomod.checkpoint import load_model
    from genomod.scoring.flops import forward_flops

    tile = forward_flops(load_model(tmp_path / "model").config, 64, batch=report["settings"]["fast_batch_size"])
    assert fast["flops_per_variant"]["executed"]["total"] == pytest.approx(
        tile.total / report["settings"]["fast_batch_size"])
    ex = exact["flops_per_variant"]
    assert ex["executed"]["total"] > 2 * ex["minimal"]["total"]  # prefix + REF + ALT for one ALT per site


# ---- bench_cli ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_cli_tiny_against_head(tmp_path):
    """bench_cli runs whole `genomod score` commands of this tree and of HEAD's genomod/ (git archive) on a tiny
    saved model: both sides import their own tree, score every allele alike, and the JSON carries the ratio."""
    import subprocess
    import sys

    save_model(tiny_test_model(0), tmp_path / "model")
    out = tmp_path / "c.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_cli.py"), "--model", str(tmp_path / "model"),
                    "--legacy-rev", "HEAD", "--variants", "7", "--window", "64", "--repeats", "1", "--mode", "fast",
                    "--out", str(out)], check=True, cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["benchmark"] == "bench_cli" and report["settings"]["variants"] == 7 and report["device"]
    assert report["legacy_commit"] == report["git_head"] and len(report["git_head"]) == 40  # both HEAD
    assert len(report["runs"]["new"]) == len(report["runs"]["legacy"]) == 1
    assert report["max_abs_diff"] < 1e-6 and report["speedup_over_legacy"] > 0
    assert all(r["peak_rss_mib"] > 0 for rs in report["runs"].values() for r in rs)
