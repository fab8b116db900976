"""Parity of genomod's model with Evo 2's reference inference code (vortex, PyPI ``vtx==1.1.0``) on CPU.

Random weights in shrunk Evo 2 layouts (same layer patterns and options as the published 1B/7B/40B/7B-1M
configs, small width), fp32: logits, named-layer outputs, converted checkpoints (single and split ``.pt``)
and Evo 2's per-sequence scoring convention. Skipped when ``vortex`` (vtx) is not importable.

Speed: vortex's rotary embedding is a Triton kernel that runs through the Triton CPU interpreter here
(seconds per call); most tests swap it for vortex's own pure-PyTorch reference ``apply_rotary_emb_torch``
and ``test_rotary_triton_kernel_matches`` runs the real kernel once, so the swap is checked too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from genomod.convert.evo2 import (
    convert_evo2,
    evo2_config_dir,
    evo2_model_config,
    evo2_sequence_scores,
    split_wqkv,
)
from genomod.model import HybridModel

REL_TOL = 1e-4
RESULTS: dict[str, float] = {}


def _import_vortex() -> types.ModuleType | None:
    """Import vortex for CPU use (stub flash-attn CUDA module, Triton interpreter); None if unavailable."""
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"  # read when vortex's kernels are defined; restored for other tests
    try:
        import flash_attn_2_cuda  # noqa: F401 - the real extension, where flash-attn is installed
        stub = False
    except ImportError:  # vortex.ops.attn_interface imports it unconditionally; a stub suffices on CPU
        sys.modules["flash_attn_2_cuda"] = types.ModuleType("flash_attn_2_cuda")
        stub = True
    cwd = os.getcwd()
    try:
        # vortex.logging opens ``activations_debug.log`` in the working directory on import: keep it out of the tree
        with tempfile.TemporaryDirectory(prefix="genomod-vortex-") as tmp:
            os.chdir(tmp)
            import vortex.model.model as vmodel
    except Exception:  # noqa: BLE001 - any import failure means "no reference available"
        return None
    finally:
        os.chdir(cwd)
        if stub:
            sys.modules.pop("flash_attn_2_cuda", None)
        if old is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = old
    return vmodel


vmodel = _import_vortex()
pytestmark = pytest.mark.skipif(vmodel is None, reason="vortex (pip install vtx==1.1.0 einops==0.8.1) not importable")


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: these tiny models gain nothing from more, and it keeps timings stable on shared CPUs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _cpu_vortex(monkeypatch: pytest.MonkeyPatch) -> None:
    """vortex calls ``torch.cuda.device(...)``, which fails without CUDA: make it a null context; Triton
    kernels run through the interpreter (set per test only, so other test modules are unaffected)."""
    monkeypatch.setattr(torch.cuda, "device", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture
def torch_rotary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace vortex's Triton rotary kernel by vortex's own PyTorch reference (same maths, fast on CPU)."""
    import vortex.model.rotary as vrot

    def apply_rotary(x, cos, sin, seqlen_offsets=0, cu_seqlens=None, max_seqlen=None, interleaved=False,
                     inplace=False, conjugate=False):
        assert cu_seqlens is None and isinstance(seqlen_offsets, int) and not conjugate
        n = x.shape[1]
        y = vrot.apply_rotary_emb_torch(x, cos[seqlen_offsets:seqlen_offsets + n],
                                        sin[seqlen_offsets:seqlen_offsets + n], interleaved)
        if inplace:
            x.copy_(y)
            return x
        return y

    monkeypatch.setattr(vrot, "apply_rotary", apply_rotary)


# ---- shrunk Evo 2 layouts -----------------------------------------------------------------------------
def shrunk_yaml(name: str, num_layers: int, hidden: int = 64, heads: int = 4, groups: int = 16,
                mlp: int = 96) -> dict:
    """A published Evo 2 YAML cut to ``num_layers`` (pattern and options kept) and a small width."""
    cfg = yaml.safe_load((evo2_config_dir() / name).read_text())
    keep = {k: [i for i in cfg[k] if i < num_layers]
            for k in ("hcs_layer_idxs", "hcm_layer_idxs", "hcl_layer_idxs", "attn_layer_idxs")}
    cfg.update(keep, hidden_size=hidden, num_filters=hidden, num_attention_heads=heads, inner_mlp_size=mlp,
               hcl_filter_groups=hidden, hcm_filter_groups=groups, hcs_filter_groups=groups,
               num_layers=num_layers, use_flash_attn=False, use_fp8_input_projections=False)
    return cfg


LAYOUTS = {
    # name: (yaml, layers, extra) - 1B: 15 heads -> 4 here; 40B: irregular attention at 3, 10 (12 layers)
    "1b": ("evo2-1b-8k.yml", 8, {}),
    "7b": ("evo2-7b-8k.yml", 10, {"heads": 8}),
    "40b": ("evo2-40b-8k.yml", 12, {"groups": 32}),
    "7b-1m": ("evo2-7b-1m.yml", 8, {}),
}


def build_vortex(cfg: dict, seed: int = 0) -> torch.nn.Module:
    """vortex StripedHyena in fp32 with random weights and stable (negative) LI log-poles."""
    from vortex.model.utils import dotdict

    torch.manual_seed(seed)
    full = dict(cfg, attn_block_dtype=torch.float32, hyena_block_dtype=torch.float32, mlp_dtype=torch.float32,
                params_dtype=torch.float32)
    model = vmodel.StripedHyena(dotdict(full))
    model = model.float()  # vortex's TELinear fallback creates its projection weights in bf16
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("log_poles"):
                p.copy_(-p.abs() - 0.05)
            elif name.endswith(("short_filter_weight", ".h")):
                p.mul_(0.3)  # keep activations O(1) through the gated cascade at this small width
    return model.eval()


def genomod_from_vortex(vm: torch.nn.Module, cfg: dict) -> HybridModel:
    """genomod model with vortex's in-memory weights (already in [Q K V] layout: no column split)."""
    gcfg = evo2_model_config(cfg, dtype="float32")
    model = HybridModel(gcfg)
    state = {k: v for k, v in vm.state_dict().items() if not k.endswith(("inv_freq", "_extra_state"))}
    model.load_state_dict(state, strict=True)
    return model.eval()


def evo2_checkpoint_state(vm: torch.nn.Module, cfg: dict) -> dict[str, torch.Tensor]:
    """What an Evo 2 ``.pt`` holds for ``vm``: Wqkv back in the training (column-split) layout."""
    state = dict(vm.state_dict())
    for i in cfg["attn_layer_idxs"]:
        for s in ("weight", "bias"):
            k = f"blocks.{i}.inner_mha_cls.Wqkv.{s}"
            if k in state:
                state[k] = split_wqkv(state[k], cfg["num_attention_heads"])
    return state


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(max abs diff, max abs diff / max abs value of the reference)."""
    d = (a.double() - b.double()).abs().max().item()
    return d, d / max(b.abs().max().item(), 1e-12)


def _tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    acgt = torch.tensor([65, 67, 71, 84])
    return acgt[torch.randint(0, 4, (batch, length), generator=g)]


# ---- tests --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_logits_match_vortex(layout: str, torch_rotary: None) -> None:
    """genomod logits == vortex logits (fp32) at L=50 and at L=200 (> MR filter length 128)."""
    yml, n, extra = LAYOUTS[layout]
    cfg = shrunk_yaml(yml, n, **extra)
    vm = build_vortex(cfg)
    gm = genomod_from_vortex(vm, cfg)
    worst = 0.0
    for length in (50, 200):
        x = _tokens(1, length)
        with torch.no_grad():
            ref, _ = vm(x)
            out = gm(x).logits
        d, rel = rel_diff(out, ref)
        RESULTS[f"{layout} L={length}"] = d
        print(f"evo2 parity {layout} L={length}: max|diff|={d:.3e} rel={rel:.3e} (logit scale {ref.abs().max():.2f})")
        assert rel <= REL_TOL, (layout, length, d, rel)
        worst = max(worst, rel)
    assert torch.isfinite(torch.tensor(worst))


def test_negative_controls_detect_errors(torch_rotary: None) -> None:
    """The tolerance is tight enough: a wrong Wqkv layout or ignoring RoPE interpolation fails it."""
    cfg = shrunk_yaml("evo2-7b-1m.yml", 8)
    vm = build_vortex(cfg)
    gm = genomod_from_vortex(vm, cfg)
    x = _tokens(1, 140)
    with torch.no_grad():
        ref, _ = vm(x)
    sd = gm.state_dict()
    key = "blocks.3.inner_mha_cls.Wqkv.weight"
    sd[key] = split_wqkv(sd[key], cfg["num_attention_heads"])
    bad_qkv = HybridModel(gm.config)
    bad_qkv.load_state_dict(sd)
    bad_rope = HybridModel(gm.config.replace(rotary_scaling_factor=1.0))
    bad_rope.load_state_dict(gm.state_dict())
    for bad in (bad_qkv.eval(), bad_rope.eval()):
        with torch.no_grad():
            assert rel_diff(bad(x).logits, ref)[1] > 100 * REL_TOL


def test_named_layer_outputs_match_vortex(torch_rotary: None) -> None:
    """``return_hidden=[name]`` equals a forward hook on the same vortex module (Evo 2's embedding recipe)."""
    cfg = shrunk_yaml("evo2-7b-8k.yml", 8)
    vm = build_vortex(cfg)
    gm = genomod_from_vortex(vm, cfg)
    names = ["embedding_layer", "blocks.0", "blocks.1.filter", "blocks.2.mlp.l3", "blocks.3.inner_mha_cls",
             "blocks.3", "blocks.6.mlp.l3", "norm"]
    got_ref: dict[str, torch.Tensor] = {}
    handles = []
    for name in names:
        def hook(_m, _i, out, name=name):
            got_ref[name] = (out[0] if isinstance(out, tuple) else out).detach()

        handles.append(vm.get_submodule(name).register_forward_hook(hook))
    x = _tokens(1, 150)
    with torch.no_grad():
        vm(x)
        out = gm(x, return_hidden=names)
    for h in handles:
        h.remove()
    for name in names:
        assert out.hidden[name].shape == got_ref[name].shape, name
        d, rel = rel_diff(out.hidden[name], got_ref[name])
        print(f"evo2 named layer {name}: max|diff|={d:.3e} rel={rel:.3e}")
        assert rel <= REL_TOL, (name, d, rel)


@pytest.mark.parametrize("split", [False, True])
def test_converted_checkpoint_matches_vortex(tmp_path: Path, split: bool, torch_rotary: None) -> None:
    """Evo 2 .pt (vortex-loadable, training Wqkv layout) -> convert -> load_model -> vortex's logits."""
    cfg = shrunk_yaml("evo2-7b-1m.yml", 8)
    cfg["qkv_proj_bias"] = True  # exercise the bias permutation as well
    vm = build_vortex(cfg)
    with torch.no_grad():
        for name, p in vm.named_parameters():
            if name.endswith("Wqkv.bias"):
                p.normal_()
    pt = tmp_path / "evo2_small.pt"
    torch.save(evo2_checkpoint_state(vm, cfg), pt)
    # vortex's own loader reads this file back into the same model (so the file layout is Evo 2's)
    vm2 = build_vortex(cfg, seed=5)
    vm2.custom_load_state_dict(torch.load(pt, weights_only=True))
    x = _tokens(1, 160)
    with torch.no_grad():
        ref, _ = vm(x)
        torch.testing.assert_close(vm2(x)[0], ref, rtol=0, atol=0)
    given = pt
    if split:
        data = pt.read_bytes()
        half = len(data) // 2
        (tmp_path / "evo2_small.pt.part0").write_bytes(data[:half])
        (tmp_path / "evo2_small.pt.part1").write_bytes(data[half:])
        pt.unlink()
        given = tmp_path / "evo2_small.pt.part1"
    cfg_path = tmp_path / "small.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = convert_evo2(given, tmp_path / "out", config=cfg_path, dtype="float32")
    from genomod.checkpoint import load_model

    model = load_model(out)
    with torch.no_grad():
        d, rel = rel_diff(model(x).logits, ref)
    RESULTS[f"converted{' split' if split else ''}"] = d
    print(f"evo2 converted checkpoint (split={split}): max|diff|={d:.3e} rel={rel:.3e}")
    assert rel <= REL_TOL


def _evo2_score_sequences(vm: torch.nn.Module, seqs: list[str], prepend_bos: bool = False) -> list[float]:
    """Evo 2's evo2/scoring.py ``_score_sequences`` (batch of equal-length seqs, mean), on vortex logits."""
    ids = torch.tensor([([0] * int(prepend_bos)) + list(s.encode()) for s in seqs])
    with torch.inference_mode():
        logits, _ = vm(ids)
    logprobs = torch.log_softmax(logits, dim=-1)[:, :-1]
    logprobs = torch.gather(logprobs, 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1).float().numpy()
    return [float(logprobs[i][: len(s)].mean()) for i, s in enumerate(seqs)]


def test_scores_match_evo2_convention(torch_rotary: None) -> None:
    """Per-sequence mean log-likelihood == Evo 2's ``score_sequences`` on vortex (with and without BOS)."""
    cfg = shrunk_yaml("evo2-1b-8k.yml", 8)
    vm = build_vortex(cfg)
    gm = genomod_from_vortex(vm, cfg)
    g = torch.Generator().manual_seed(7)
    seqs = ["".join("ACGT"[i] for i in torch.randint(0, 4, (90,), generator=g)) for _ in range(2)]
    for bos in (False, True):
        ref = _evo2_score_sequences(vm, seqs, prepend_bos=bos)
        got = evo2_sequence_scores(gm, seqs, prepend_bos=bos)
        d = max(abs(a - b) for a, b in zip(got, ref))
        print(f"evo2 scores (bos={bos}): {got} vs {ref}, max|diff|={d:.2e}")
        assert d <= 1e-5


def test_rotary_triton_kernel_matches() -> None:
    """vortex's real Triton rotary kernel (interpreted on CPU), interpolated RoPE (factor 128): same logits."""
    import vortex.model.positional_embeddings as vpe

    cfg = shrunk_yaml("evo2-7b-1m.yml", 4)
    vm = build_vortex(cfg)
    rope = vm.blocks[3].inner_mha_cls.rotary_emb
    assert isinstance(rope, vpe.LinearlyScaledRotaryEmbedding) and rope._linear_scaling_factor == 128
    gm = genomod_from_vortex(vm, cfg)
    assert gm.config.rotary_scaling_factor == 128.0
    x = _tokens(1, 48)
    t0 = time.perf_counter()
    with torch.no_grad():
        ref, _ = vm(x)
        d, rel = rel_diff(gm(x).logits, ref)
    RESULTS["triton rotary 7b-1m L=48"] = d
    print(f"evo2 parity with Triton rotary kernel: max|diff|={d:.3e} rel={rel:.3e} ({time.perf_counter() - t0:.1f} s)")
    assert rel <= REL_TOL


def test_bf16_cpu_matches_vortex_bf16(torch_rotary: None) -> None:
    """bf16 (vortex's inference dtypes: all bf16 but LI poles/residues) on CPU: informative, loose bound."""
    cfg = shrunk_yaml("evo2-1b-8k.yml", 8)
    vm = build_vortex(cfg)
    gm = genomod_from_vortex(vm, cfg)
    x = _tokens(1, 200)
    with torch.no_grad():
        vm.to_bfloat16_except_pr_lc()  # what vortex's load_checkpoint leaves (its TE projections are bf16 too)
        for name, p in vm.named_parameters():
            if "projections" in name:
                p.data = p.data.bfloat16()
        ref, _ = vm(x)
        out = gm.to_dtype("bfloat16")(x).logits
    d, rel = rel_diff(out.float(), ref.float())
    print(f"evo2 parity bf16 CPU 1b L=200: max|diff|={d:.3e} rel={rel:.3e}")
    assert rel <= 1e-2
