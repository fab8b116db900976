"""Splice-site fine-tuning data (GUE splice + HS3D donors) with a test split the default model never trained on.

    python -m data_prep.prepare_splice_finetune --data-root ../shared/data \
        --recipe recipes/default_model/mixture.yaml --recipe recipes/default_model/mixture_stage2.yaml \
        --out work_local/finetune/splice

Records: the ``GUE__splice__reconstructed`` windows of ``pretrain/windows/gue_human.fa.gz`` (400 nt; label 1 =
donor with GT at the centre, 0 = acceptor with AG just before it, 2 = neither) and the true donors of
``pretrain/windows/hs3d_splice_donors.fa.gz`` (140 nt, GT at 70). Each is cut to ``--length`` nt (140) centred
on the site (index len // 2 in both files), so a donor's GT sits at the same offset whatever its file.

Keeping the test split apart from pretraining: the default model's mixture (``data_prep.make_mixture``) held
records out by a seeded hash, ``u = blake2b(seed|source|record id)``: probe records if ``u < probe_fraction``,
validation if ``u < probe_fraction + val_fraction``, training otherwise. This script recomputes ``u`` for every
GUE/HS3D record with the recipes' seed, source names and fractions: a record held out by every given recipe
(stage 1 and stage 2 share them) is a **test** candidate; every other record may have been trained on and goes
to **train** / **val** (a seeded 10% by record id). Then the test candidates are screened: any that shares at
least ``--max-shared`` of its canonical 31-mer positions with any record that pretraining could have trained on
(all sources of the recipes, not only these two files; long records counted as trained whole) is dropped, so
the test split holds neither the windows the model was pretrained on nor copies or nested copies of them.
Records dropped by the mixture's BRCA1 exclusion (name pattern) are left out altogether.

Outputs: ``OUT/splice.tsv`` (id, source, label, split, pretrain, shared_kmer_fraction, sequence) and
``OUT/manifest.json`` (input digests, recipes, rules, counts per split / label / source, screen results).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.make_mixture import KmerScreen, _kmer_codes, load_recipe, read_fasta, record_unit

GUE, HS3D = "pretrain/windows/gue_human.fa.gz", "pretrain/windows/hs3d_splice_donors.fa.gz"
GUE_LABELS = {"1": "donor", "0": "acceptor", "2": "none"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _source(recipe: Any, path: str) -> Any:
    found = [s for s in recipe.sources if s.path == path]
    return found[0] if found else None


def pretrain_status(recipes: list[Any], path: str, rid: str, ordinal: int, header: str) -> str:
    """'heldout' (probe/val in every recipe or not in the mixture), 'excluded' (benchmark name rule), or 'train'."""
    status = []
    for r in recipes:
        src = _source(r, path)
        if src is None:
            status.append("heldout")  # the file is not in this mixture at all
            continue
        pattern = r.exclusion.get("name_pattern")
        if pattern and re.search(pattern, header):
            return "excluded"
        if src.record_fraction < 1 and record_unit(r.seed, "thin", src.name, rid, ordinal) >= src.record_fraction:
            status.append("heldout")  # thinned away before anything was cut: never seen
            continue
        u = record_unit(r.seed, src.name, rid)
        status.append("heldout" if u < r.probe_fraction + r.val_fraction else "train")
    return "heldout" if all(s == "heldout" for s in status) else "train"


def _crop(seq: bytes, length: int) -> bytes:
    start = len(seq) // 2 - length // 2
    return seq[max(0, start) : max(0, start) + length]


def collect(root: Path, recipes: list[Any], length: int, val_fraction: float, seed: int) -> list[dict[str, Any]]:
    """Every GUE splice / HS3D record, cropped, labelled, with its pretraining status and split."""
    rows = []
    for path, source in ((GUE, "gue"), (HS3D, "hs3d")):
        for ordinal, (header, seq) in enumerate(read_fasta(root / path)):
            if source == "gue":
                if "splice" not in header:
                    continue
                m = re.search(r"label=(\d)", header)
                if not m or m.group(1) not in GUE_LABELS:
                    continue
                label = GUE_LABELS[m.group(1)]
            else:
                label = "donor"
            rid = header.split()[0]
            status = pretrain_status(recipes, path, rid, ordinal, header)
            if status == "excluded":
                continue
            crop = _crop(seq.upper(), length)
            if len(crop) < length:
                continue
            if status == "heldout":
                split = "test"
            else:
                split = "val" if record_unit(seed, "splice-ft", source, rid) < val_fraction else "train"
            rows.append({"id": f"{source}:{rid}", "source": source, "label": label, "split": split,
                         "pretrain": status, "sequence": crop.decode()})
    return rows


def trained_kmers(root: Path, recipes: list[Any], test_table: np.ndarray, k: int, pattern: str | None
                  ) -> tuple[np.ndarray, dict[str, int]]:
    """The test k-mers found in any record pretraining could have trained on (conservative superset)."""
    hits: set[int] = set()
    scanned: dict[str, int] = {}
    seen: set[str] = set()
    for r in recipes:
        for src in r.sources:
            if src.path in seen or (pattern and not re.search(pattern, src.name)):
                continue
            seen.add(src.path)
            n = 0
            batch: list[bytes] = []
            for ordinal, (header, seq) in enumerate(read_fasta(root / src.path)):
                rid = header.split()[0]
                if pretrain_status(recipes, src.path, rid, ordinal, header) != "train" and len(seq) <= r.segment:
                    continue
                batch.append(seq)
                n += 1
                if sum(map(len, batch)) > 4_000_000:
                    hits |= _hits(batch, test_table, k)
                    batch = []
            if batch:
                hits |= _hits(batch, test_table, k)
            scanned[src.name] = n
            print(f"screened {src.name}: {n} records, {len(hits)} test k-mers hit so far", file=sys.stderr)
    return np.array(sorted(hits), dtype=np.uint64), scanned


def _hits(seqs: list[bytes], table: np.ndarray, k: int) -> set[int]:
    codes, ok = _kmer_codes(b"N".join(seqs), k)
    if not len(codes) or not len(table):
        return set()
    idx = np.searchsorted(table, codes).clip(max=len(table) - 1)
    hit = (table[idx] == codes) & ok
    return set(codes[hit].tolist())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True, type=Path, help="../shared/data")
    ap.add_argument("--recipe", action="append", required=True, help="mixture recipe(s) of the base model")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--length", type=int, default=140, help="window length around the site (default 140)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kmer", type=int, default=31)
    ap.add_argument("--max-shared", type=float, default=0.5,
                    help="drop a test window when at least this fraction of its k-mers occur in pretraining "
                         "training records (default 0.5)")
    ap.add_argument("--screen-sources", default=None,
                    help="regex on source names to screen against (default: every source of the recipes)")
    args = ap.parse_args(argv)
    recipes = [load_recipe(p) for p in args.recipe]
    rows = collect(args.data_root, recipes, args.length, args.val_fraction, args.seed)
    test = [r for r in rows if r["split"] == "test"]
    screen = KmerScreen([], args.kmer)
    codes = [c[ok] for c, ok in (_kmer_codes(r["sequence"].encode(), args.kmer) for r in test)]
    table = np.unique(np.concatenate(codes)) if codes else np.zeros(0, dtype=np.uint64)
    screen.table, scanned = trained_kmers(args.data_root, recipes, table, args.kmer, args.screen_sources)
    fractions = screen.fractions([r["sequence"].encode() for r in test]) if test else np.zeros(0)
    for r, f in zip(test, fractions):
        r["shared_kmer_fraction"] = round(float(f), 4)
    dropped = sum(1 for r in test if r["shared_kmer_fraction"] >= args.max_shared)
    rows = [r for r in rows if not (r["split"] == "test" and r["shared_kmer_fraction"] >= args.max_shared)]
    args.out.mkdir(parents=True, exist_ok=True)
    cols = ["id", "source", "label", "split", "pretrain", "shared_kmer_fraction", "sequence"]
    tmp = args.out / ".splice.tsv.tmp"
    with open(tmp, "w") as fh:
        fh.write("\t".join(cols) + "\n")
        for r in rows:
            fh.write("\t".join(str(r.get(c, "")) for c in cols) + "\n")
    tmp.replace(args.out / "splice.tsv")
    counts: dict[str, Any] = {}
    for r in rows:
        key = f"{r['split']}/{r['source']}/{r['label']}"
        counts[key] = counts.get(key, 0) + 1
    manifest = {
        "inputs": {p: {"sha256": _sha256(args.data_root / p)} for p in (GUE, HS3D)},
        "recipes": [str(p) for p in args.recipe],
        "length": args.length, "kmer": args.kmer, "max_shared": args.max_shared,
        "rule": "test = records held out of pretraining by every recipe's seeded hash (probe + val fractions) "
                "and sharing < max_shared of their k-mers with any record pretraining could have trained on; "
                "train/val = the other records (val: seeded hash, val_fraction)",
        "test_candidates": len(test), "test_dropped_by_screen": dropped,
        "test_shared_fraction_quantiles": (np.quantile(fractions, [0.5, 0.9, 0.99, 1.0]).round(4).tolist()
                                           if len(fractions) else []),
        "screened_sources": scanned, "counts": dict(sorted(counts.items())),
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps({k: manifest[k] for k in ("test_candidates", "test_dropped_by_screen", "counts")}, indent=2))
    return 0


__all__ = ["collect", "main", "pretrain_status"]

if __name__ == "__main__":
    sys.exit(main())
