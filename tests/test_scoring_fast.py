"""Fast SNV scores: grid tiling, strand handling, and sign agreement with exact on a repeat-trained toy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genomod.scoring import VariantScorer
from genomod.scoring.fast import fetch_padded, site_logprobs, snv_score
from genomod.tokenizer import encode
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


def test_fetch_padded():
    seq = "ACGTACGT"
    fetch = lambda c, s, e: seq[s:e]  # noqa: E731
    assert fetch_padded(fetch, "c", -3, 2, 8) == "NNNAC"
    assert fetch_padded(fetch, "c", 6, 11, 8) == "GTNNN"
    assert fetch_padded(fetch, "c", -5, -2, 8) == "NNN"
    assert fetch_padded(fetch, "c", 9, 12, 8) == "NNN"


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
