"""Fast SNV scores: grid tiling, strand handling, and sign agreement with exact on a repeat-trained toy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genomod.io.windows import Window
from genomod.scoring import VariantScorer
from genomod.scoring.fast import TileCache, site_logprobs, snv_score
from genomod.tokenizer import BASE_IDS, encode, reverse_complement
from tests.model_helpers import tiny_test_model

UNIT = "ACGTTGCAGA"  # period-10 repeat


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def repeat_model():
    """A tiny model overfitted (a few seconds) on the repeat: breaking it must look damaging."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the function-scoped autouse fixture
    model = tiny_test_model(0, layer_types=("SE", "MR", "MHA"), name="repeat-toy")
    seq = torch.from_numpy(encode(UNIT * 20))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _step in range(35):
        starts = torch.randint(0, 100, (8,))
        batch = torch.stack([seq[s : s + 64] for s in starts])
        logits = model(batch).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    assert loss.item() < 0.5, loss.item()
    return model.eval()


def test_tiles_do_not_depend_on_batch(repeat_model):
    seq = UNIT * 30
    fetch = lambda c, s, e: seq[s:e]  # noqa: E731
    all_pos = site_logprobs(repeat_model, fetch, "c", len(seq), range(0, 300, 7), 64, rc=True, batch_size=3)
    one = site_logprobs(repeat_model, fetch, "c", len(seq), [133], 64, rc=True, batch_size=1)
    assert np.allclose(all_pos[133][0], one[133][0], atol=1e-5)
    assert np.allclose(all_pos[133][1], one[133][1], atol=1e-5)
    # forward log-probs at a site equal a direct forward over its left context
    logits = repeat_model(torch.from_numpy(encode(seq[133 - 32 - 5 : 133]))[None]).logits[0, -1]
    direct = torch.log_softmax(logits, -1)[torch.tensor([65, 67, 71, 84])].detach().numpy()
    assert np.allclose(direct, one[133][0], atol=1e-4)  # site 133 = tile 4 (context from 96)


def test_fast_and_exact_agree_on_repeat(repeat_model, tmp_path):
    seq = UNIT * 30
    fasta = tmp_path / "rep.fa"
    fasta.write_text(f">rep\n{seq}\n")
    sc = VariantScorer(repeat_model, fasta, window=64, batch_size=8)
    variants = []
    for p in (101, 125, 150, 177, 203):
        ref = seq[p - 1]
        variants += [("rep", p, ref, a) for a in "ACGT" if a != ref]
    fast = sc.score(variants, mode="fast").delta_fast.to_numpy()
    exact = sc.score(variants, mode="exact").delta_ll_sum.to_numpy()
    assert (fast < -1).all() and (exact < -1).all()  # breaking the repeat is clearly damaging
    assert np.array_equal(np.sign(fast), np.sign(exact))
    lp = site_logprobs(repeat_model, lambda c, s, e: seq[s:e], "rep", len(seq), [150], 64, rc=True)
    assert snv_score(lp[150], seq[150], "N") != snv_score(lp[150], seq[150], "N")  # NaN for non-ACGT


def _plain_fast(model, seq: str, window: int, rc: bool, variants) -> np.ndarray:
    """The tiling rule written plainly: one unbatched forward per tile and strand, log_softmax at the site."""
    half = window // 2
    fetch = lambda c, s, e: seq[s:e]  # noqa: E731
    lps: dict = {}

    def row_lp(toks: np.ndarray, key) -> np.ndarray:
        if key not in lps:
            t = torch.from_numpy(toks)[None]
            if key[0] == "rc":
                t = reverse_complement(t)
            lps[key] = torch.log_softmax(model(t).logits[0].float(), -1)[:, torch.as_tensor(BASE_IDS)].detach().numpy()
        return lps[key]

    out = []
    for _, pos, r, a in variants:
        p, ri, ai = pos - 1, "ACGT".find(r), "ACGT".find(a)
        k = p // half
        fwd = row_lp(encode(Window.read(fetch, "c", k * half - half, k * half + half, len(seq)).seq), ("f", k))
        score = float(fwd[p - (k * half - half) - 1][ai] - fwd[p - (k * half - half) - 1][ri])
        if rc:
            back = row_lp(encode(Window.read(fetch, "c", k * half, k * half + 2 * half, len(seq)).seq), ("rc", k))
            q = (k * half + 2 * half - 1) - p
            lp = back[q - 1][[3, 2, 1, 0]]
            score = 0.5 * (score + float(lp[ai] - lp[ri]))
        out.append(score)
    return np.array(out)


@pytest.mark.parametrize("rc", [False, True])
def test_dense_input_each_tile_once_whatever_the_chunking(tmp_path, rc):
    """All 3 SNVs at every position (a saturation scan) plus sparse far sites: same scores for any chunking
    (and equal to plain per-tile forwards), and every tile forwarded exactly once per strand."""
    import random

    rng = random.Random(3)
    seq = "".join(rng.choice("ACGT") for _ in range(3000))
    seq = seq[:700] + "N" * 5 + seq[705:]
    fasta = tmp_path / "c.fa"
    fasta.write_text(f">c\n{seq}\n")
    positions = list(range(1, 601)) + [1500, 2990, 3000]  # dense from the contig start, then sparse to the end
    variants = [("c", p, seq[p - 1], a) for p in positions if seq[p - 1] != "N" for a in "ACGT" if a != seq[p - 1]]
    model = tiny_test_model(1)
    window = 32
    half = window // 2
    n_tiles = len({(p - 1) // half for p in positions})
    expected = _plain_fast(model, seq, window, rc, variants)
    rows: list[int] = []
    hook = model.register_forward_hook(lambda _m, inp, _out: rows.append(inp[0].shape[0]))
    try:
        sc = VariantScorer(model, fasta, window=window, batch_size=4, rc=rc)
        for chunk_size in (None, 5, 64, 100_000):
            rows.clear()
            got = np.array([r["delta_fast"] for r in sc.iter_scores(variants, "fast", chunk_size=chunk_size)])
            assert np.allclose(got, expected, atol=1e-5, rtol=0), chunk_size
            assert sum(rows) == n_tiles * (2 if rc else 1), (chunk_size, sum(rows), n_tiles)
    finally:
        hook.remove()
    # the default chunks hold whole tiles: forwards are full batches (the last one aside)
    rows.clear()
    hook = model.register_forward_hook(lambda _m, inp, _out: rows.append(inp[0].shape[0]))
    try:
        list(VariantScorer(model, fasta, window=window, batch_size=4, fast_batch_size=8, rc=rc).iter_scores(
            variants, "fast"))
    finally:
        hook.remove()
    assert all(r == 8 for r in rows[:-2]) and sum(rows) == n_tiles * (2 if rc else 1)


def test_tile_cache_evicts_by_bytes():
    cache = TileCache(max_bytes=3 * 16 * 4 * 4)
    for k in range(5):
        cache.put(("c", k), (np.zeros((16, 4), np.float32), None))
    assert len(cache) == 3 and ("c", 0) not in cache and ("c", 4) in cache
    assert cache.get(("c", 2)) is not None
    cache.put(("c", 5), (np.zeros((16, 4), np.float32), None))
    assert ("c", 2) in cache and ("c", 3) not in cache  # LRU: the read tile 2 stayed
