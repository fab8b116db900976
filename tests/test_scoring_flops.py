"""FLOP counter of genomod.scoring.flops against a hand count for one small config."""

from __future__ import annotations

import math

import pytest

from genomod.model import count_parameters
from genomod.scoring.flops import exact_flops, fast_flops, forward_flops, matmul_params, prefill_flops
from tests.model_helpers import tiny_test_config


def test_flops_hand_count_small_config():
    cfg = tiny_test_config()  # hidden 32, MLP 64, vocab 512 tied, SE MR LI MHA, 2 heads, MR 16 taps, state 16
    d, f, v = 32, 64, 512
    per_block = 3 * d * d + d * d + 3 * d * f  # projections / Wqkv, out projection, MLP l1 l2 l3
    assert matmul_params(cfg) == 4 * per_block + v * d == 57344
    # analytic parameter count minus what is not a matrix product weight (norms, filters, biases, D)
    assert matmul_params(cfg) < count_parameters(cfg)

    L = 8
    got = forward_flops(cfg, L)
    assert got.matmul == 2 * 57344 * L
    assert got.attention == 4 * d * (L * (L + 1) / 2)  # query t sees t + 1 keys
    n = 2 * L
    rfft = 2.5 * n * math.log2(n)
    fft_conv = d * (2 * rfft + 6 * (n // 2 + 1)) + d * rfft  # rows: rfft(u) + irfft + product; filter once
    featurizer = 3 * (2 * 3 * 3 * d * L)  # three Hyena layers, 3 taps on 3 x hidden channels
    se = 2 * 7 * d * L
    modal = 4 * d * 16 * L  # LI modal filter: 16 modes
    assert got.conv == pytest.approx(featurizer + se + fft_conv + fft_conv + modal)
    assert got.total == got.matmul + got.attention + got.conv

    # batch: everything per row except the per-forward filter terms
    two = forward_flops(cfg, L, batch=2)
    assert two.matmul == 2 * got.matmul and two.attention == 2 * got.attention
    assert two.conv == pytest.approx(2 * got.conv - 2 * d * rfft - modal)

    # with a cache: attention sees the context, MR convolves its 15 carried inputs, LI adds the state output
    ctx = forward_flops(cfg, L, context=L)
    assert ctx.attention == 4 * d * (L * L + L * (L + 1) / 2)
    m = 2 * (L + 15)
    mr_cached = d * (2 * 2.5 * m * math.log2(m) + 6 * (m // 2 + 1)) + d * 2.5 * m * math.log2(m)
    assert ctx.conv == pytest.approx(featurizer + se + mr_cached + fft_conv + modal + 2 * d * 16 * L)


def test_scoring_flops_per_variant():
    cfg = tiny_test_config()
    w = 64
    ex = exact_flops(cfg, w, alts_per_site=3, batch=1)
    suffix = forward_flops(cfg, 32, context=32)
    prefix = prefill_flops(cfg, 32)
    assert ex["minimal"].total == pytest.approx(suffix.total)
    # each ALT: SE over the first 9 suffix positions (local_split: MR's reach would leave 6 of 32 unsaved),
    # MR, LI, MHA and the head over all 32
    alt = forward_flops(cfg, 9, context=32, layers=range(1), head=False) + forward_flops(
        cfg, 32, context=32, layers=range(1, 4))
    assert ex["executed"].total == pytest.approx((prefix.total + suffix.total + 3 * alt.total) / 3)
    assert alt.total < suffix.total
    # counting by parts adds up to the whole forward
    parts = forward_flops(cfg, 32, context=32, layers=range(2), head=False) + forward_flops(
        cfg, 32, context=32, layers=range(2, 4))
    assert parts.total == pytest.approx(suffix.total) and parts.matmul == suffix.matmul
    assert fast_flops(cfg, w, batch=1).total == pytest.approx(forward_flops(cfg, 64).total / 96)
    assert fast_flops(cfg, w, rc=True, batch=1).total == pytest.approx(2 * forward_flops(cfg, 64).total / 96)
    assert fast_flops(cfg, w, batch=1, variants_per_tile=1).total == pytest.approx(forward_flops(cfg, 64).total)


def test_prefill_flops_hand_count():
    # HybridModel.prefill of 32 tokens through SE MR LI MHA: the first three blocks in full, the attention block
    # projects Q/K/V at all 32 positions but attends, projects out and runs its MLP for the last query only,
    # and the head unembeds one position
    cfg = tiny_test_config()
    d, f, v, L = 32, 64, 512, 32
    assert cfg.trailing_outputs(L) == [L, L, L, 1]
    got = prefill_flops(cfg, L, batch=2)
    full = forward_flops(cfg, L, batch=2, use_cache=True)
    first3 = forward_flops(cfg, L, batch=2, use_cache=True, layers=range(3), head=False)
    assert got.matmul == first3.matmul + 2 * 2 * (3 * d * d * L + (d * d + 3 * d * f) * 1 + v * d)
    assert got.attention == 2 * 4 * d * L  # one query sees the 32 keys
    assert got.conv == full.conv
    assert got.total < full.total
    # a trailing local block (SE after the attention block) reads its reach (3 - 1 + 7 - 1 = 8) more inputs:
    # the attention block outputs 9 positions, the last SE projects 9 and outputs 1
    cfg2 = tiny_test_config(layer_types=("SE", "MHA", "SE"))
    assert cfg2.trailing_outputs(L) == [L, 9, 1]
    two = prefill_flops(cfg2, L)
    assert two.matmul == forward_flops(cfg2, L, layers=range(1), head=False).matmul + 2 * (
        3 * d * d * L + (d * d + 3 * d * f) * 9 + 3 * d * d * 9 + (d * d + 3 * d * f) * 1 + v * d)
    assert two.attention == 4 * d * (9 * L - 9 * 8 / 2)  # the last 9 queries see 24..32 keys
