"""bf16 inference and weight-only int8 (torchao): what is cast or quantized, scores close to float32, errors."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest
import torch

from genomod.checkpoint import load_model, save_model
from genomod.cli.main import main
from genomod.errors import ConfigError, ModelError
from genomod.model import build_model
from genomod.precision import (
    apply_precision,
    check_quantize,
    plan_bytes,
    quantize_int8,
    resolve_dtype,
    torchao_version,
    weight_bytes,
)
from genomod.scoring import VariantScorer
from tests.model_helpers import tiny_test_config, tiny_test_model

pytestmark = pytest.mark.usefixtures("one_thread")
HAS_TORCHAO = torchao_version() != "not installed"
needs_torchao = pytest.mark.skipif(not HAS_TORCHAO, reason="torchao not installed (pip install 'genomod[quant]')")
# Stated tolerances on the tiny random model (scores are delta log-likelihoods, |score| ~ 0.01-0.5): bf16 rounds
# weights and activations to 8 mantissa bits; int8 weight-only keeps fp32 activations.
BF16_ATOL, INT8_ATOL = 0.05, 0.03


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("precision")
    torch.set_num_threads(1)
    save_model(tiny_test_model(0), d / "model")
    rng = random.Random(3)
    seq = "".join(rng.choice("ACGT") for _ in range(400))
    (d / "ref.fa").write_text(f">chr1\n{seq}\n")
    variants = [("chr1", p, seq[p - 1], b) for p in range(100, 300, 17) for b in "ACGT" if b != seq[p - 1]]
    return {"dir": d, "seq": seq, "variants": variants, "cache": {}}


def _scores(env, mode: str, **kw) -> np.ndarray:
    """Scores of env's variants (computed once per mode and precision in this module)."""
    key = (mode, tuple(sorted(kw.items())))
    if key not in env["cache"]:
        sc = VariantScorer(str(env["dir"] / "model"), env["dir"] / "ref.fa", device="cpu", window=64, **kw)
        df = sc.score(env["variants"], mode=mode)
        assert (df["status"] == "ok").all()
        env["cache"][key] = df["delta_ll_mean" if mode == "exact" else "delta_fast"].to_numpy(float)
    return env["cache"][key]


# ---- dtype ------------------------------------------------------------------------------------------
def test_resolve_dtype_per_device_and_errors():
    assert resolve_dtype(None, "cpu", "float32") == "float32"
    assert resolve_dtype("auto", "cpu", "bfloat16") == "bfloat16"  # CPU keeps the checkpoint's dtype
    assert resolve_dtype("auto", "cuda", "float32") == "bfloat16"  # CUDA: bfloat16 whatever was stored
    assert resolve_dtype(torch.bfloat16, "cpu") == "bfloat16"
    assert resolve_dtype("float32", "cuda") == "float32"
    for bad in ("fp8", "bf16", "int8", torch.int8):
        with pytest.raises(ConfigError, match="unknown dtype"):
            resolve_dtype(bad, "cpu")
    assert check_quantize(None) is None and check_quantize("none") is None and check_quantize("int8") == "int8"
    with pytest.raises(ConfigError, match="unknown quantize 'int4'"):
        check_quantize("int4")
    with pytest.raises(ConfigError, match="unknown quantize"):
        load_model("default", quantize="int4")
    with pytest.raises(ConfigError, match="unknown dtype"):
        tiny_test_model(0).to_dtype("float8")


def test_bf16_keeps_li_poles_in_float32(env):
    model = load_model(env["dir"] / "model", dtype="bfloat16")
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    li = [n for n in dtypes if n.endswith(("log_poles", "residues"))]
    assert li and all(dtypes[n] == torch.float32 for n in li)
    others = [n for n in dtypes if n not in li]
    assert others and all(dtypes[n] == torch.bfloat16 for n in others)
    assert load_model(env["dir"] / "model").embedding_layer.weight.dtype == torch.float32  # CPU default


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_bf16_scores_close_to_fp32(env, mode):
    fp32 = _scores(env, mode)
    bf16 = _scores(env, mode, dtype="bfloat16")
    assert np.isfinite(bf16).all() and not np.array_equal(bf16, fp32)  # it really ran in bf16
    np.testing.assert_allclose(bf16, fp32, atol=BF16_ATOL)
    assert np.corrcoef(bf16, fp32)[0, 1] > 0.95


def test_scorer_refuses_precision_for_in_memory_model(env):
    with pytest.raises(ConfigError, match="apply_precision"):
        VariantScorer(tiny_test_model(0), env["dir"] / "ref.fa", dtype="bfloat16")
    with pytest.raises(ConfigError, match="apply_precision"):
        VariantScorer(tiny_test_model(0), env["dir"] / "ref.fa", quantize="int8")


# ---- int8 --------------------------------------------------------------------------------------------
@needs_torchao
def test_int8_quantizes_linear_weights_only(env):
    model = load_model(env["dir"] / "model", quantize="int8")
    assert model.quantization == "int8"
    linears = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert linears
    for name, p in model.named_parameters():
        module = name.rsplit(".", 1)[0]
        if module in linears and name.endswith(".weight"):
            assert p.qdata.dtype == torch.int8 and p.qdata.shape == p.shape, name
        else:
            assert not hasattr(p, "qdata"), name
            assert p.dtype == torch.float32, name  # filters, poles, norms, embedding, biases untouched


@needs_torchao
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_int8_weight_bytes_match_the_plan(env, dtype):
    meta = build_model(tiny_test_config(), meta=True)
    model = load_model(env["dir"] / "model", dtype=dtype, quantize="int8")
    assert weight_bytes(model) == plan_bytes(meta, dtype, "int8")  # torchao's layout is what the plan assumes
    plain = load_model(env["dir"] / "model", dtype=dtype)
    assert weight_bytes(plain) == plan_bytes(meta, dtype)
    assert weight_bytes(model) < weight_bytes(plain)


@needs_torchao
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_int8_scores_close_to_fp32(env, mode):
    fp32 = _scores(env, mode)
    int8 = _scores(env, mode, quantize="int8")
    assert np.isfinite(int8).all() and not np.array_equal(int8, fp32)
    np.testing.assert_allclose(int8, fp32, atol=INT8_ATOL)
    assert np.corrcoef(int8, fp32)[0, 1] > 0.95


@needs_torchao
def test_quantized_model_cannot_be_saved_or_recast(env, tmp_path):
    model = load_model(env["dir"] / "model", quantize="int8")
    with pytest.raises(ModelError, match="quantized"):
        save_model(model, tmp_path / "q")
    with pytest.raises(ConfigError, match="quantized"):
        apply_precision(model, "bfloat16")
    with pytest.raises(ConfigError, match="quantized"):
        model.to_dtype("bfloat16")


def test_int8_without_torchao_names_the_extra(env, monkeypatch):
    for name in [m for m in sys.modules if m == "torchao" or m.startswith("torchao.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchao", None)  # import torchao -> ImportError
    with pytest.raises(ConfigError, match=r"genomod\[quant\]"):
        quantize_int8(tiny_test_model(0))
    with pytest.raises(ConfigError, match=r"genomod\[quant\]"):
        load_model(env["dir"] / "model", quantize="int8")


# ---- CLI ---------------------------------------------------------------------------------------------
def _vcf(env, path):
    header = "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=400>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    body = "".join(f"{c}\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for c, p, r, a in env["variants"][:12])
    path.write_text(header + body)
    return path


def _cli_scores(env, tmp_path, *extra) -> list[float]:
    vcf = _vcf(env, tmp_path / "in.vcf")
    tsv = tmp_path / f"out{len(extra)}{'_'.join(extra)}.tsv"
    args = ["score", "-i", str(vcf), "-r", str(env["dir"] / "ref.fa"), "-o", str(tmp_path / "o.vcf"), "--tsv",
            str(tsv), "--model", str(env["dir"] / "model"), "--window", "64", "--device", "cpu", *extra]
    assert main(args) == 0
    lines = tsv.read_text().splitlines()
    col = lines[0].split("\t").index("delta_ll_mean")
    return [float(line.split("\t")[col]) for line in lines[1:]]


def test_cli_dtype_option(env, tmp_path, capsys):
    fp32 = _cli_scores(env, tmp_path)
    np.testing.assert_allclose(fp32, _scores(env, "exact")[:12], atol=1e-5)  # CPU default: float32
    bf16 = _cli_scores(env, tmp_path, "--dtype", "bfloat16")
    assert bf16 != fp32
    np.testing.assert_allclose(bf16, fp32, atol=BF16_ATOL)
    assert main(["score", "-i", "x.vcf", "-r", "x.fa", "-o", "o.vcf", "--dtype", "fp8"]) == 2
    assert "fp8" in capsys.readouterr().err


@needs_torchao
def test_cli_quantize_option(env, tmp_path):
    fp32 = list(_scores(env, "exact")[:12])
    int8 = _cli_scores(env, tmp_path, "--quantize", "int8")
    assert int8 != fp32
    np.testing.assert_allclose(int8, fp32, atol=INT8_ATOL)
