"""Auxiliary labelled variants for variant-effect fine-tuning, labelled by the genetic code and the splice consensus.

    python -m data_prep.prepare_variant_aux --data-root ../shared/data \
        --recipe recipes/default_model/mixture_stage3.yaml --out work_local/finetune/variant_aux

A head fine-tuned on one gene's assay (BRCA1, 13 exons) sees a few hundred stop-gain and splice variants, all at
that gene's loci. These rows teach the same two concepts anywhere (``data.auxiliary`` of a variant-effect task:
added to the training rows of every fit, never evaluated):

- **nonsense (LOF) vs synonymous (FUNC)** SNVs in coding sequence put in genomic form: the longest ORF of a
  mammalian mRNA cut into 60-180 bp exons with a random whole intron at each cut (``genomod.eval.probes
  .spliced_orf``; introns from the recipe's ``splicing.introns`` training records, at most ``--max-intron`` bp);
- **canonical GT/AG (LOF) vs intronic (FUNC)** SNVs, ``--near``..``--far`` bp inside the intron, in human splice
  windows (GUE, HS3D; ``genomod.eval.probes.splice_variants``).

Only *training* records of the recipe are used (``u = blake2b(seed|source|record)`` outside the probe and
validation ranges), after its BRCA1 name filter and 31-mer screen: the probe files (``genomod/data/probes/``) are
built from held-out records, so ``genomod eval probes --model <fine-tuned folder>`` stays a test on records the
auxiliary rows never came from. At most one positive and one negative per record (seeded), ``--per-class`` of
each of the four classes. Nothing here uses a benchmark label.

Outputs: ``OUT/aux.fa`` (one contig per record), ``OUT/aux_variants.tsv`` (chrom, pos 1-based, ref, alt,
func_class LOF/FUNC, kind, source, record) and ``OUT/manifest.json`` (inputs with md5, recipe, rule, counts).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.make_mixture import (
    KmerScreen,
    Recipe,
    Source,
    _read_records,
    _training_record,
    exclusion_filters,
    intron_pool,
    load_recipe,
    longest_orf,
    splice_sites,
)
from genomod.errors import GenomodError, InputError
from genomod.eval.probes import (
    OrfRecord,
    ProbeVariant,
    SpliceRecord,
    orf_variants,
    splice_variants,
    spliced_orf,
)
from genomod.utils import atomic_dir, file_digest

ORF_SOURCES = ("human_refseq_mrna", "mouse_mrna", "cow_mrna")
SPLICE_SOURCES = ("human_gue_splice_etc", "human_hs3d_donors")
CLASSES = {("nonsense", 1): "nonsense", ("synonymous", 0): "synonymous", ("splice", 1): "canonical",
           ("splice", 0): "intronic"}


def _pick_pair(variants: list[ProbeVariant], rng: np.random.Generator) -> list[ProbeVariant] | None:
    """One positive and one negative SNV drawn at random, or None when a class is missing."""
    picks = []
    for label in (1, 0):  # a draw for each class that has candidates, so the seeded stream stays the same
        cands = [v for v in variants if v.label == label]
        picks.append(cands[int(rng.integers(len(cands)))] if cands else None)
    return None if None in picks else picks


def _training_records(recipe: Recipe, src: Source, root: Path, screen: KmerScreen | None,
                      name_re: re.Pattern | None, seed: int) -> list[tuple[str, str, bytes]]:
    """The source's training records (name filter, thinning, k-mer screen, hold-outs), in a seeded order."""
    counts = dict.fromkeys(("records", "dropped_name", "thinned"), 0)
    recs = [r for r in _read_records(root / src.path, src, recipe.seed, name_re, counts)
            if _training_record(recipe, src, r[1], len(r[2])) and not r[2].upper().strip(b"ACGT")]
    if screen is not None and recs:
        fracs = screen.fractions([r[2] for r in recs])
        recs = [r for r, f in zip(recs, fracs) if f < recipe.exclusion["max_fraction"]]
    order = np.random.default_rng([seed, len(recs)]).permutation(len(recs))
    return [recs[i] for i in order]


def _orf_case(recipe: Recipe, src: Source, header: str, rid: str, seq: bytes, introns: list[str],
              rng: np.random.Generator, near: int, far: int) -> tuple[str, list[ProbeVariant], Any] | None:
    """A nonsense and a synonymous SNV of the record's longest ORF, in the ORF put in genomic form."""
    orf = longest_orf(seq, recipe.min_orf)
    if orf is None:
        return None
    rec = OrfRecord(rid, seq.upper().decode(), orf[0] - 1, orf[1], src.name)
    picks = _pick_pair(orf_variants(rec), rng)
    if picks is None:
        return None
    gene, offsets = spliced_orf(rec, introns, rng)
    return gene, picks, offsets


def _splice_case(recipe: Recipe, src: Source, header: str, rid: str, seq: bytes, introns: list[str],
                 rng: np.random.Generator, near: int, far: int) -> tuple[str, list[ProbeVariant], Any] | None:
    """A canonical GT/AG SNV and an intronic SNV (``near``..``far`` bp in) of a splice window."""
    donor, acceptor = splice_sites(header, seq, src.splice_layout)
    if donor is None and acceptor is None:
        return None
    rec = SpliceRecord(rid, seq.upper().decode(), None if donor is None else donor - 1,
                       None if acceptor is None else acceptor - 1, src.name)
    picks = _pick_pair(splice_variants(rec, near=near, far=far), rng)
    return None if picks is None else (rec.seq, picks, None)


def collect(recipe: Recipe, root: Path, per_class: int = 250, orf_sources: tuple[str, ...] = ORF_SOURCES,
            splice_sources: tuple[str, ...] = SPLICE_SOURCES, max_intron: int = 1000, near: int = 8, far: int = 30,
            seed: int = 0) -> tuple[list[tuple[str, str]], list[dict[str, Any]], dict[str, Any]]:
    """(contigs as (name, sequence), variant rows, counts); see the module docstring."""
    by_name = {s.name: s for s in recipe.sources}
    for name in (*orf_sources, *splice_sources):
        if name not in by_name:
            raise InputError(f"source {name!r} is not in the recipe ({', '.join(by_name)})")
    if recipe.splicing is None:
        raise InputError("the recipe has no splicing section: its `introns` sources give the introns")
    screen, name_re = exclusion_filters(recipe)
    pool, pool_counts = intron_pool(recipe, root, screen, name_re)
    introns = [x.upper().decode() for x in pool if len(x) <= max_intron]
    if not introns:
        raise InputError(f"no training intron of at most {max_intron} bp")
    rng = np.random.default_rng(seed)
    contigs: list[tuple[str, str]] = []
    rows: list[dict[str, Any]] = []
    taken = dict.fromkeys(CLASSES.values(), 0)
    for names, case, cls in ((orf_sources, _orf_case, "nonsense"), (splice_sources, _splice_case, "canonical")):
        quota = -(-per_class // len(names))  # records per source, so that every source gives its share
        for name in names:
            used = 0
            for header, rid, seq in _training_records(recipe, by_name[name], root, screen, name_re, seed):
                if used >= quota or taken[cls] >= per_class:
                    break
                made = case(recipe, by_name[name], header, rid, seq, introns, rng, near, far)
                if made is None:
                    continue
                contig, picks, to_contig = made
                contigs.append((f"aux{len(contigs)}", contig))
                for v in picks:
                    kind = CLASSES[("splice" if v.group in ("donor", "acceptor") else v.group, v.label)]
                    pos = int(to_contig[v.pos]) if to_contig is not None else v.pos
                    rows.append({"chrom": contigs[-1][0], "pos": pos + 1, "ref": v.ref, "alt": v.alt,
                                 "func_class": "LOF" if v.label else "FUNC", "kind": kind, "site": v.group,
                                 "source": name, "record": rid})
                    taken[kind] += 1
                used += 1
    counts = {"contigs": len(contigs), "variants": len(rows), "by_class": taken,
              "by_source": {n: sum(r["source"] == n for r in rows) for n in (*orf_sources, *splice_sources)},
              "introns": len(introns), "intron_pool": pool_counts}
    return contigs, rows, counts


def write_outputs(out: Path, contigs: list[tuple[str, str]], rows: list[dict[str, Any]],
                  manifest: dict[str, Any]) -> None:
    """aux.fa, aux_variants.tsv and manifest.json, written into ``out`` atomically."""
    cols = ["chrom", "pos", "ref", "alt", "func_class", "kind", "site", "source", "record"]
    with atomic_dir(out) as tmp:
        with open(tmp / "aux.fa", "w") as fh:
            for name, seq in contigs:
                fh.write(f">{name}\n")
                fh.writelines(seq[i : i + 80] + "\n" for i in range(0, len(seq), 80))
        with open(tmp / "aux_variants.tsv", "w") as fh:
            fh.write("\t".join(cols) + "\n")
            fh.writelines("\t".join(str(r[c]) for c in cols) + "\n" for r in rows)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", required=True, type=Path,
                    help="mixture recipe of the base model (hold-outs, BRCA1 exclusion, splicing.introns)")
    ap.add_argument("--data-root", required=True, type=Path, help="folder the recipe's source paths are relative to")
    ap.add_argument("--out", required=True, type=Path, help="output folder (replaced atomically)")
    ap.add_argument("--per-class", type=int, default=250, help="variants per class (nonsense, synonymous, "
                    "canonical, intronic)")
    ap.add_argument("--max-intron", type=int, default=1000, help="longest intron put into a coding sequence (bp)")
    ap.add_argument("--near", type=int, default=8, help="intronic negatives start this far into the intron")
    ap.add_argument("--far", type=int, default=30, help="... and end this far")
    ap.add_argument("--orf-sources", default=",".join(ORF_SOURCES), help="recipe sources (mRNAs) of the ORFs")
    ap.add_argument("--splice-sources", default=",".join(SPLICE_SOURCES),
                    help="recipe sources of the splice sites (their splice_layout finds the sites)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    orf_sources = tuple(x for x in args.orf_sources.split(",") if x)
    splice_sources = tuple(x for x in args.splice_sources.split(",") if x)
    try:
        if args.per_class < 1 or not 2 < args.near <= args.far:
            raise InputError("--per-class must be >= 1 and 2 < --near <= --far")
        recipe = load_recipe(args.recipe)
        contigs, rows, counts = collect(recipe, args.data_root, args.per_class, orf_sources, splice_sources,
                                        args.max_intron, args.near, args.far, args.seed)
    except GenomodError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    by_name = {s.name: s for s in recipe.sources}
    used = [*orf_sources, *splice_sources, *recipe.splicing.introns]
    manifest = {
        "recipe": str(args.recipe), "seed": args.seed, "per_class": args.per_class, "max_intron": args.max_intron,
        "near": args.near, "far": args.far,
        "inputs": {n: {"path": by_name[n].path, "md5": file_digest(args.data_root / by_name[n].path, "md5"),
                       "licence": by_name[n].licence} for n in used},
        "rule": "training records of the recipe only (outside its probe and validation hashes, BRCA1 name filter "
                "and 31-mer screen applied); nonsense=LOF / synonymous=FUNC in the longest ORF of an mRNA cut "
                "into 60-180 bp exons by random training introns; canonical GT/AG=LOF / intronic near..far bp=FUNC "
                "in splice windows; one positive and one negative per record",
        "counts": counts,
    }
    write_outputs(args.out, contigs, rows, manifest)
    print(json.dumps(counts["by_class"]), f"-> {args.out}")
    return 0


__all__ = ["collect", "main", "write_outputs"]

if __name__ == "__main__":
    sys.exit(main())
