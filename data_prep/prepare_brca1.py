"""Build the shipped BRCA1 benchmark data (run once; outputs are committed under genomod/data/).

    python -m data_prep.prepare_brca1 --shared ../shared --out genomod/data

- ``brca1/findlay2018_brca1_snvs.tsv``: the 3,893 SNVs of Findlay et al. 2018 with renamed columns.
- ``reference/hg19_chr17_brca1.fa.gz`` and ``hg38_chr17_brca1.fa.gz`` (+ .fai/.gzi): full-coordinate chr17
  (bases only inside the shared slice, N elsewhere), bgzip, 60-column lines.
"""

from __future__ import annotations

import argparse
import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from genomod.io.contigs import parse_region_name
from genomod.utils import file_digest

LINE = 60
CHR17_LENGTH = {"hg19": 81_195_210, "hg38": 83_257_441}
SLICES = {
    "hg19": "data/reference/chr17_hg19_40577018-41677368.fa.gz",
    "hg38": "data/reference/chr17_hg38_42425000-43600000.fa.gz",
}
XLSX = "data/brca1/findlay2018_sge_brca1.xlsx"

# output column -> source column in Supplementary Table 1
COLUMNS = {
    "pos": "position (hg19)",
    "ref": "reference",
    "alt": "alt",
    "consequence": "consequence",
    "func_class": "func.class",
    "function_score": "function.score.mean",
    "p_nonfunctional": "p.nonfunctional",
    "cadd": "CADD.score",
    "phylop": "phyloP (mammalian)",
    "polyphen2": "polyphen2",
    "sift": "sift",
    "agvgd_class": "aGVGD.class",
    "transcript_variant": "transcript_variant",
    "protein_variant": "protein_variant",
}
TSV_COLUMNS = ["chrom", "pos", "ref", "alt", "consequence", "region", *list(COLUMNS)[4:]]
CODING = {"Missense", "Synonymous", "Nonsense"}


def build_table(xlsx: Path) -> pd.DataFrame:
    """Findlay 2018 Supplementary Table 1 -> the shipped SNV table (exact column names, sorted by pos, alt)."""
    raw = pd.read_excel(xlsx, header=2)
    out = pd.DataFrame({new: raw[old] for new, old in COLUMNS.items()})
    out.insert(0, "chrom", "chr17")
    out["pos"] = out["pos"].astype("int64")
    out["region"] = np.where(out["consequence"].isin(CODING), "coding", "noncoding")
    out = out[TSV_COLUMNS].sort_values(["pos", "alt"], kind="stable").reset_index(drop=True)
    assert len(out) == 3893 and out["pos"].nunique() == 1326, (len(out), out["pos"].nunique())
    return out


def read_slice(path: Path) -> tuple[str, int, str]:
    """(contig, 0-based start, sequence) of a one-record FASTA whose name is ``contig:start-end``."""
    with gzip.open(path, "rt") as fh:
        header = fh.readline()
        seq = "".join(line.strip() for line in fh)
    name = header[1:].split()[0]
    parsed = parse_region_name(name)
    if parsed is None:
        raise SystemExit(f"{path}: header {name!r} is not CONTIG:START-END")
    contig, start, end = parsed
    if end - start != len(seq):
        raise SystemExit(f"{path}: header says {end - start} nt, record has {len(seq)}")
    return contig, start, seq


def _pieces(total: int, start: int, seq: str, block: int = 6_000_000):
    for s in range(0, start, block):
        yield "N" * min(block, start - s)
    yield seq
    tail = total - start - len(seq)
    for s in range(0, tail, block):
        yield "N" * min(block, tail - s)


def write_full_coordinate(out: Path, contig: str, total: int, start: int, seq: str, description: str) -> None:
    """Write a bgzipped full-length contig with ``seq`` at ``start`` (0-based) and N elsewhere; faidx it."""
    tmp = out.with_name(f".{out.name}.tmp")
    bgz = pysam.BGZFile(str(tmp), "wb")
    try:
        bgz.write(f">{contig} {description}\n".encode())
        pending = ""
        for piece in _pieces(total, start, seq):
            text = pending + piece
            n_full = len(text) // LINE
            if n_full:
                body = "\n".join(text[i * LINE : (i + 1) * LINE] for i in range(n_full)) + "\n"
                bgz.write(body.encode())
            pending = text[n_full * LINE :]
        if pending:
            bgz.write((pending + "\n").encode())
    finally:
        bgz.close()
    os.replace(tmp, out)
    for ext in (".fai", ".gzi"):
        Path(str(out) + ext).unlink(missing_ok=True)
    pysam.faidx(str(out))
    fa = pysam.FastaFile(str(out))
    assert tuple(fa.references) == (contig,) and tuple(fa.lengths) == (total,), (fa.references, fa.lengths)
    assert fa.fetch(contig, start, start + len(seq)) == seq
    fa.close()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "genomod" / "data")
    args = ap.parse_args(argv)

    brca1 = args.out / "brca1"
    brca1.mkdir(parents=True, exist_ok=True)
    table = build_table(args.shared / XLSX)
    tsv = brca1 / "findlay2018_brca1_snvs.tsv"
    table.to_csv(tsv, sep="\t", index=False, na_rep="", lineterminator="\n")
    print(f"{tsv}: {len(table)} rows, sha256 {file_digest(tsv)}")

    ref_dir = args.out / "reference"
    ref_dir.mkdir(parents=True, exist_ok=True)
    for build, rel in SLICES.items():
        src = args.shared / rel
        contig, start, seq = read_slice(src)
        out = ref_dir / f"{build}_chr17_brca1.fa.gz"
        desc = (
            f"{build} chr17 full coordinates; bases only at {start + 1}-{start + len(seq)} (1-based), N elsewhere; "
            f"from {src.name} (genomod data_prep.prepare_brca1)"
        )
        write_full_coordinate(out, contig, CHR17_LENGTH[build], start, seq, desc)
        sizes = sum(Path(str(out) + e).stat().st_size for e in ("", ".fai", ".gzi"))
        print(
            f"{out}: {contig} {CHR17_LENGTH[build]} nt, slice {start + 1}-{start + len(seq)}, {sizes} bytes"
        )
        print(f"  sha256 {file_digest(out)}")


if __name__ == "__main__":
    main()
