"""Parity of the fused Hyena kernels with the PyTorch reference ops (forward and gradients) and dispatch.

Triton kernels run under the interpreter on CPU: ``TRITON_INTERPRET=1`` is set here before triton is
imported. If another test module imported the kernels first without it, the Triton tests of this module
are skipped in-process and the whole file is re-run once in a subprocess with the interpreter on.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib.util  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from genomod.ops import dispatch  # noqa: E402
from genomod.ops import reference as ref  # noqa: E402
from genomod.ops.long_conv import long_conv_gate  # noqa: E402

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()
TOL = dict(atol=1e-4, rtol=1e-4)


def _kernels_runnable() -> bool:
    """True when the Triton kernels can run in this process (CUDA, or built by the interpreter)."""
    if not HAS_TRITON:
        return False
    from genomod.ops.triton_short_conv import is_interpreted

    return HAS_CUDA or is_interpreted()


RUNNABLE = _kernels_runnable()
needs_kernels = pytest.mark.skipif(not RUNNABLE, reason="triton kernels not runnable in this process "
                                   "(no triton, or imported without TRITON_INTERPRET=1; see subprocess test)")
cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not (HAS_CUDA and HAS_TRITON), reason="needs a CUDA GPU and triton")


def _inputs(b: int, c: int, length: int, dtype=torch.float32, device="cpu", seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3 * c, length, generator=g).to(device=device, dtype=dtype).requires_grad_(True)


def _grads(fn, z: torch.Tensor, params: list[torch.Tensor], *args) -> list[torch.Tensor]:
    """Output and gradients w.r.t. z and params of ``fn(x2, x1, v, *args)`` under a fixed cotangent."""
    c = z.shape[1] // 3
    y = fn(z[:, :c], z[:, c : 2 * c], z[:, 2 * c :], *args)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y)
    return [y, *torch.autograd.grad(y, [z, *params], gy)]


def _assert_all_close(a: list[torch.Tensor], b: list[torch.Tensor], **tol) -> None:
    for name, x, y in zip(["y", "dz", *[f"dparam{i}" for i in range(len(a))]], a, b):
        torch.testing.assert_close(x.float(), y.float(), msg=lambda m, n=name: f"{n}: {m}", **(tol or TOL))


def _poles(groups: int, state: int) -> tuple[torch.Tensor, torch.Tensor]:
    rates = torch.logspace(math.log10(0.5), -4, state)
    lp = (-rates)[None].repeat(groups, 1).requires_grad_(True)
    res = torch.randn(groups, state, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    return lp, res


# ---- Hyena-SE: fused short conv + gate ----------------------------------------------------------------
@needs_kernels
@pytest.mark.parametrize("b,c,length,groups,k", [(2, 16, 50, 4, 7), (1, 8, 5, 8, 7), (1, 32, 40, 1, 1),
                                                  (2, 12, 33, 3, 3)])
def test_short_conv_matches_reference(b, c, length, groups, k):
    from genomod.ops.triton_short_conv import short_conv_gate

    z = _inputs(b, c, length)
    h = torch.randn(groups, k, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    _assert_all_close(_grads(short_conv_gate, z, [h], h), _grads(ref.hyena_se_ref, z, [h], h))


# ---- Hyena-MR: blocked Toeplitz conv + gate ----------------------------------------------------------
MR_CASES = [(2, 32, 100, 2, 20, 16), (1, 32, 200, 1, 128, None), (1, 24, 70, 2, 9, 16),
            (1, 16, 10, 1, 128, 16)]


def test_toeplitz_blocks_are_the_filter():
    from genomod.ops.triton_blocked_conv import num_bands, toeplitz_blocks

    h = torch.arange(1.0, 21.0)[None]
    t = toeplitz_blocks(h, 8)
    assert t.shape == (1, num_bands(20, 8), 8, 8) == (1, 4, 8, 8)
    assert t[0, 0, 3, 1] == h[0, 2] and t[0, 0, 1, 3] == 0
    assert t[0, 2, 3, 7] == h[0, 12] and t[0, 3, 0, 4] == 0


@pytest.mark.parametrize("b,c,length,groups,k,block", MR_CASES)
def test_blocked_conv_torch_matches_reference(b, c, length, groups, k, block):
    from genomod.ops.triton_blocked_conv import blocked_conv_torch

    z = _inputs(b, c, length)
    h = torch.randn(groups, k, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    d = torch.randn(c, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    blocked = _grads(blocked_conv_torch, z, [h, d], h, d, block or 64)
    _assert_all_close(blocked, _grads(ref.hyena_mr_ref, z, [h, d], h, d))


@needs_kernels
@pytest.mark.parametrize("b,c,length,groups,k,block", MR_CASES)
def test_blocked_conv_matches_reference(b, c, length, groups, k, block):
    from genomod.ops.triton_blocked_conv import blocked_conv_gate

    z = _inputs(b, c, length)
    h = torch.randn(groups, k, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    d = torch.randn(c, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    fused = _grads(lambda *a: blocked_conv_gate(*a, block=block), z, [h, d], h, d)
    _assert_all_close(fused, _grads(ref.hyena_mr_ref, z, [h, d], h, d))


# ---- Hyena-LI: chunked FFT long conv + gate ----------------------------------------------------------
@pytest.mark.parametrize("b,c,length,groups,chunk_bytes", [(2, 16, 64, 8, 5000), (1, 8, 37, 8, 1 << 30)])
def test_long_conv_matches_reference(b, c, length, groups, chunk_bytes):
    z = _inputs(b, c, length)
    lp, res = _poles(groups, 4)
    d = torch.randn(c, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    fused = _grads(lambda *a: long_conv_gate(*a, chunk_bytes=chunk_bytes), z, [lp, res, d], lp, res, d)
    _assert_all_close(fused, _grads(ref.hyena_li_ref, z, [lp, res, d], lp, res, d))


# ---- dispatch ----------------------------------------------------------------------------------------
def test_config_field_selects_kernels_and_env_overrides_it(monkeypatch):
    from genomod.errors import ConfigError
    from genomod.model import ModelConfig

    monkeypatch.delenv("GENOMOD_KERNELS", raising=False)
    assert dispatch.choose("LI", "cpu", torch.float32, config_mode="fused")[0] == "fused"
    assert dispatch.choose("LI", "cpu", torch.float32, config_mode="reference")[0] == "reference"
    monkeypatch.setenv("GENOMOD_KERNELS", "reference")
    assert dispatch.choose("LI", "cpu", torch.float32, config_mode="fused")[0] == "reference"
    assert ModelConfig(kernels="fused").kernels == "fused"
    with pytest.raises(ConfigError, match="kernels"):
        ModelConfig(kernels="fast")


def test_dispatch_modes(monkeypatch):
    monkeypatch.setenv("GENOMOD_KERNELS", "reference")
    assert dispatch.kernel_mode() == "reference"
    assert dispatch.choose("LI", "cpu", torch.float32) == ("reference", None)
    monkeypatch.setenv("GENOMOD_KERNELS", "auto")
    assert dispatch.choose("SE", "cpu", torch.float32) == ("reference", None)  # auto: fused only on CUDA
    monkeypatch.setenv("GENOMOD_KERNELS", "bogus")
    assert dispatch.kernel_mode() == "auto"
    with dispatch.use_kernels("fused"):
        assert dispatch.kernel_mode() == "fused"
        assert dispatch.choose("LI", "cpu", torch.float32)[0] == "fused"
        backend, reason = dispatch.choose("MR", "cpu", torch.float64)
        assert backend == "reference" and "dtype" in reason
        if RUNNABLE:
            assert dispatch.choose("SE", "cpu", torch.float32) == ("fused", None)
            assert dispatch.choose("SE", "cpu", torch.float32, filter_len=64)[0] == "reference"
    with pytest.raises(ValueError):
        dispatch.set_kernels("fast")


def test_kernel_report_lists_backends():
    rep = dispatch.kernel_report()
    for key in ("mode", "triton", "flash_attn", "sdpa_backends", "attention",
                "hyena_SE", "hyena_MR", "hyena_LI"):
        assert key in rep
    from genomod.cli.info import collect_info

    assert collect_info()["kernels"]["hyena_LI"] == rep["hyena_LI"]


def _tiny_model(dtype: torch.dtype = torch.float32, device: str = "cpu"):
    from genomod.model import HybridModel, ModelConfig

    cfg = ModelConfig(hidden_size=32, num_attention_heads=2, inner_mlp_size=64,
                      layer_types=["SE", "MR", "LI", "MHA"],
                      se_filter_groups=2, mr_filter_groups=2, mr_filter_length=24, li_filter_groups=16,
                      li_state_size=4, mr_filter_decay=2.0, max_seqlen=64)
    torch.manual_seed(0)
    model = HybridModel(cfg).to(device)
    return model.to_dtype(dtype) if dtype != torch.float32 else model


def _model_run(model, tokens: torch.Tensor, mode: str) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    with dispatch.use_kernels(mode):
        logits = model(tokens).logits
    logits.float().logsumexp(-1).mean().backward()
    return [logits] + [p.grad for p in model.parameters()]


def test_model_fused_equals_reference():
    model = _tiny_model()
    tokens = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(5))
    ref_out = _model_run(model, tokens, "reference")
    fused_out = _model_run(model, tokens, "fused")
    _assert_all_close(fused_out, ref_out)
    with dispatch.use_kernels("fused"):  # the cached/chunked path stays on the reference ops
        out = model(tokens[:, :20], use_cache=True)
        assert out.cache is not None


def test_fallback_is_logged_once(caplog):
    from genomod.model import HybridModel, ModelConfig

    dispatch._logged.clear()
    cfg = ModelConfig(hidden_size=8, num_attention_heads=2, inner_mlp_size=16, layer_types=["MR", "MR"],
                      se_filter_groups=2, mr_filter_groups=2, li_filter_groups=8, max_seqlen=32)
    tokens = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(0))
    with dispatch.use_kernels("fused"), caplog.at_level(logging.WARNING, logger="genomod.ops.dispatch"):
        model = HybridModel(cfg).double()
        for _ in range(2):
            model(tokens)
        assert dispatch.hyena_op("MR", "fused", "cpu", torch.float64) is ref.hyena_mr_ref
        assert model.blocks[0].filter._ops[(torch.device("cpu"), torch.float64)] is ref.hyena_mr_ref
    assert sum("dtype" in r.getMessage() for r in caplog.records) == 1


def _ops_of(model) -> dict[str, object]:
    return {blk.kind: op for blk in model.blocks if blk.kind != "MHA" for op in blk.filter._ops.values()}


def test_kernels_are_resolved_once_outside_forward(monkeypatch):
    """The mode is read at build and on set_kernels only; forward looks nothing up (env, dispatch, attention)."""
    import genomod.ops.attention as attention

    monkeypatch.delenv("GENOMOD_KERNELS", raising=False)
    model = _tiny_model()
    tokens = torch.randint(0, 256, (1, 24), generator=torch.Generator().manual_seed(3))
    before = model(tokens).logits
    assert _ops_of(model) == {"SE": ref.hyena_se_ref, "MR": ref.hyena_mr_ref, "LI": ref.hyena_li_ref}
    monkeypatch.setenv("GENOMOD_KERNELS", "fused")  # read when a model is built, not per forward

    def boom(*a, **k):
        raise AssertionError("looked up inside forward")

    for mod, name in ((dispatch, "kernel_mode"), (dispatch, "hyena_op"), (dispatch, "backend"),
                      (attention, "attention_backend"), (attention, "requested_backend")):
        monkeypatch.setattr(mod, name, boom)
    assert torch.equal(model(tokens).logits, before)
    assert _ops_of(model)["LI"] is ref.hyena_li_ref


def test_set_kernels_reaches_models_already_built(monkeypatch):
    import copy

    from genomod.ops.long_conv import long_conv_gate

    monkeypatch.delenv("GENOMOD_KERNELS", raising=False)
    model = _tiny_model().resolve_backends()  # chosen now for (cpu, float32): auto -> reference on CPU
    twin = copy.deepcopy(model)
    assert _ops_of(model)["LI"] is ref.hyena_li_ref
    with dispatch.use_kernels("fused"):
        assert _ops_of(model)["LI"] is long_conv_gate and _ops_of(twin)["LI"] is long_conv_gate
        assert (_ops_of(model)["MR"] is ref.hyena_mr_ref) != RUNNABLE
    assert _ops_of(model)["LI"] is ref.hyena_li_ref and _ops_of(twin)["LI"] is ref.hyena_li_ref
    dispatch.set_kernels("fused")
    try:
        assert _ops_of(model)["LI"] is long_conv_gate
    finally:
        dispatch.set_kernels(None)
    assert _ops_of(model)["LI"] is ref.hyena_li_ref


def test_ops_never_import_the_model():
    import ast
    from pathlib import Path

    import genomod.ops

    for path in Path(genomod.ops.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("genomod.model") for n in names), f"{path.name} imports {names}"


@pytest.mark.skipif(RUNNABLE or not HAS_TRITON or HAS_CUDA, reason="kernels already ran in this process")
def test_triton_kernels_in_subprocess():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


# ---- CUDA: bf16 parity (skips cleanly without a GPU) -------------------------------------------------
def _bf16_close(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b):
        err = (x.float() - y.float()).norm() / y.float().norm().clamp_min(1e-6)
        assert err < 2e-2, f"relative error {err:.3e}"


@cuda
@needs_cuda
@pytest.mark.parametrize("b,c,length,groups", [(2, 256, 4096, 16), (1, 1024, 8192, 64)])
def test_cuda_bf16_short_conv(b, c, length, groups):
    from genomod.ops.triton_short_conv import short_conv_gate

    z = _inputs(b, c, length, torch.bfloat16, "cuda")
    h = torch.randn(groups, 7, device="cuda").to(torch.bfloat16).requires_grad_(True)
    zf = z.detach().float().requires_grad_(True)
    hf = h.detach().float().requires_grad_(True)
    _bf16_close(_grads(short_conv_gate, z, [h], h), _grads(ref.hyena_se_ref, zf, [hf], hf))


@cuda
@needs_cuda
@pytest.mark.parametrize("b,c,length,groups,k", [(2, 256, 4096, 16, 128), (1, 1024, 8192, 64, 128)])
def test_cuda_bf16_blocked_conv(b, c, length, groups, k):
    from genomod.ops.triton_blocked_conv import blocked_conv_gate

    z = _inputs(b, c, length, torch.bfloat16, "cuda")
    h = (torch.randn(groups, k, device="cuda") / k**0.5).to(torch.bfloat16).requires_grad_(True)
    d = torch.randn(c, device="cuda").to(torch.bfloat16).requires_grad_(True)
    zf, hf, df = (t.detach().float().requires_grad_(True) for t in (z, h, d))
    _bf16_close(_grads(blocked_conv_gate, z, [h, d], h, d), _grads(ref.hyena_mr_ref, zf, [hf, df], hf, df))


@cuda
@needs_cuda
def test_cuda_bf16_long_conv_and_model():
    z = _inputs(1, 256, 8192, torch.bfloat16, "cuda")
    lp, res = (t.detach().cuda().requires_grad_(True) for t in _poles(256, 16))
    d = torch.randn(256, device="cuda").to(torch.bfloat16).requires_grad_(True)
    zf, df = (t.detach().float().requires_grad_(True) for t in (z, d))
    _bf16_close(_grads(long_conv_gate, z, [lp, res, d], lp, res, d),
                _grads(ref.hyena_li_ref, zf, [lp, res, df], lp, res, df))
    model = _tiny_model(torch.bfloat16, "cuda")
    tokens = torch.randint(0, 256, (2, 512), device="cuda")
    _bf16_close(_model_run(model, tokens, "fused")[:1], _model_run(model, tokens, "reference")[:1])
