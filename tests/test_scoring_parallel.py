"""genomod.scoring.parallel: threaded batches give the serial results, in order, in the caller's grad mode."""

from __future__ import annotations

import numpy as np
import torch

from genomod.model import ModelConfig, build_model
from genomod.scoring.exact import Site, exact_deltas, window_ll
from genomod.scoring.parallel import cpu_workers, intra_op_threads, map_batches


def _sites(n: int, window: int, seed: int = 0) -> list[Site]:
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", np.uint8)
    out = []
    for i in range(n):
        ref = rng.integers(0, 4, window)
        toks = letters[ref].astype(np.int64)
        alts = []
        for a in range(1 + i % 3):  # 1-3 alleles per site
            t = toks.copy()
            t[window // 2] = letters[(ref[window // 2] + a + 1) % 4]
            alts.append(t)
        out.append(Site("c", i, toks, alts))
    return out


def test_threaded_scoring_is_batch_invariant_and_matches_serial() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig.preset("tiny")).eval()
    sites = _sites(11, 64)
    threaded = exact_deltas(model, sites, batch_size=3, workers=2)
    assert [len(d) for d in threaded] == [len(s.alt_tokens) for s in sites]
    # the same numbers whatever the other sites of the input (shards) and the worker count
    parts = exact_deltas(model, sites[:2], batch_size=3, workers=2) + exact_deltas(model, sites[2:], 3, workers=3)
    for a, b in zip(threaded, parts):
        np.testing.assert_array_equal(a, b)
    # against the serial loop with the caller's intra-op threads: float rounding only
    for a, b in zip(exact_deltas(model, sites, batch_size=3, workers=1), threaded):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    rows = np.stack([s.ref_tokens for s in sites])
    np.testing.assert_array_equal(window_ll(model, rows, 4, workers=2),
                                  np.concatenate([window_ll(model, rows[:4], 4, workers=2),
                                                  window_ll(model, rows[4:], 4, workers=2)]))
    np.testing.assert_allclose(window_ll(model, rows, 4, workers=1), window_ll(model, rows, 4, workers=2),
                               rtol=1e-5, atol=1e-4)


def test_map_batches_order_grad_mode_and_threads() -> None:
    before = torch.get_num_threads()
    seen = []

    def fn(i: int) -> int:
        seen.append((torch.is_grad_enabled(), torch.get_num_threads()))
        return i * i

    with torch.no_grad():
        assert map_batches(fn, list(range(7)), 3) == [i * i for i in range(7)]
    assert all(not grad and n == 1 for grad, n in seen)  # caller's no_grad, one intra-op thread each
    assert torch.get_num_threads() == before  # restored
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert cpu_workers("cpu", 3) == 3 and cpu_workers("cpu") == before and cpu_workers("cuda") == 1
    seen.clear()
    assert map_batches(fn, [4], 2) == [16] and seen[0][1] == 1  # a lone batch runs with one thread too
