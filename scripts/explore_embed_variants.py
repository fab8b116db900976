"""Label-free check of delta_embed variants on the shipped probes: which block, which positions, which distance.

    python scripts/explore_embed_variants.py --model default --max-variants-per-class 250

For every splice and nonsense probe SNV (both strands, the probe window) it computes, from full forwards of the
REF and ALT windows, minus the mean L2 distance of each block's output over the positions from the variant to the
window's end (``block0`` ... ``blockN``; the last block is the shipped delta_embed), and for the last block the
distance over only the first k positions (``span{k}``), its maximum (``max``) and the mean cosine distance
(``cos``). AUROCs are printed for records with even and odd index separately (choose on one half, check on the
other) and for all. No labels other than the probes' own are read; BRCA1 is never used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genomod.checkpoint import load_model  # noqa: E402
from genomod.eval import probes as P  # noqa: E402
from genomod.scoring.exact import build_site  # noqa: E402
from genomod.tokenizer import reverse_complement  # noqa: E402

SPANS = (1, 2, 4, 8, 16, 32, 64, 128)


def variant_distances(model: torch.nn.Module, rows: list[np.ndarray], at: int) -> dict[str, np.ndarray]:
    """Per ALT row (rows[1:]) each variant's distance to the REF row (rows[0]) from position ``at`` on."""
    names = [f"blocks.{k}" for k in range(len(model.blocks))]
    with torch.no_grad():
        out = model(torch.from_numpy(np.stack(rows)), return_hidden=names)
    res = {}
    for k, name in enumerate(names):
        h = out.hidden[name][:, at:].float()
        dist = (h[1:] - h[:1]).norm(dim=-1)  # (alts, positions); after the loop: the last block's
        res[f"block{k}"] = dist.mean(-1).numpy()
    for k in SPANS:
        res[f"span{k}"] = dist[:, :k].mean(-1).numpy()
    res["max"] = dist.max(-1).values.numpy()
    hn = torch.nn.functional.normalize(h, dim=-1)
    res["cos"] = (1 - (hn[1:] * hn[:1]).sum(-1)).mean(-1).numpy()
    return res


def variant_scores(model: torch.nn.Module, variants: list, seqs: list[str], window: int) -> dict[str, np.ndarray]:
    """Every variant's score under each variant of delta_embed (minus the distance, both strands averaged);
    ``block{last}`` is the shipped delta_embed."""
    scores: dict[str, np.ndarray] = {}
    by_site: dict[tuple[int, int], list[int]] = {}
    for i, v in enumerate(variants):
        by_site.setdefault((v.record, v.pos), []).append(i)
    for (rec, pos), idx in by_site.items():
        site = build_site(lambda c, s, e: seqs[int(c)][s:e], str(rec), pos,
                          [(variants[i].ref, variants[i].alt) for i in idx], window, len(seqs[rec]))
        rows = [site.ref_tokens, *site.alt_tokens]
        fwd = variant_distances(model, rows, window // 2)
        rev = variant_distances(model, [reverse_complement(r) for r in rows], window - 1 - window // 2)
        for name in fwd:
            scores.setdefault(name, np.zeros(len(variants)))[idx] = -(fwd[name] + rev[name]) / 2
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--probe-dir", default=str(ROOT / "genomod" / "data" / "probes"))
    ap.add_argument("--max-variants-per-class", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the AUROCs as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    window = P.default_window(model)
    store: dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = {}

    def score_fn(key: str):
        def fn(variants, seqs):
            scores = variant_scores(model, variants, seqs, window)
            store[key] = (np.array([v.label for v in variants]), np.array([v.record for v in variants]), scores)
            return scores[f"block{len(model.blocks) - 1}"]
        return fn

    n = args.max_variants_per_class
    P.splice_probe(None, P.probe_file(args.probe_dir, "splice.fa.gz"), max_variants_per_class=n,
                   score_fn=score_fn("splice"), progress=False, n_boot=10)
    P.nonsense_probe(None, P.probe_file(args.probe_dir, "orfs.fa.gz"), max_variants_per_class=n,
                     score_fn=score_fn("nonsense"), progress=False, n_boot=10)
    result: dict[str, dict[str, dict[str, float]]] = {}
    for probe, (y, rec, scores) in store.items():
        for half, sel in (("even", rec % 2 == 0), ("odd", rec % 2 == 1), ("all", np.ones(len(y), bool))):
            result.setdefault(probe, {})[half] = {name: round(float(roc_auc_score(y[sel], -s[sel])), 4)
                                                  for name, s in scores.items()}
            print(f"{probe:8s} {half:4s} " + " ".join(f"{k}={v:.3f}" for k, v in result[probe][half].items()))
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "max_variants_per_class": n, "auroc": result},
                                             indent=1) + "\n")


if __name__ == "__main__":
    main()
