"""Shared pytest fixtures: the ``shared`` data folder and tiny generated FASTA/VCF files."""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable
from pathlib import Path

import pysam
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # data_prep/ is a top-level folder, not part of the installed package
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session", autouse=True)
def _genomod_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep genomod's cache (bgzip copies, indexes of read-only FASTAs) inside the test session's tmp dir."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENOMOD_CACHE", str(tmp_path_factory.mktemp("genomod_cache")))
        yield


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch):
    """Run a test with one torch/OpenMP thread (model-level tests stay fast and comparable on 2 cores)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ``shared`` folder beside the repository root; skips the test when it is absent."""
    path = Path(__file__).resolve().parents[2] / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not present")
    return path


def write_fasta(path: Path, records: dict[str, str], compression: str = "plain", width: int = 60) -> Path:
    """Write ``records`` (name -> sequence) as FASTA: compression 'plain', 'gzip' or 'bgzip'."""
    lines = []
    for name, seq in records.items():
        lines.append(f">{name}")
        lines.extend(seq[i : i + width] for i in range(0, len(seq), width))
    text = ("\n".join(lines) + "\n").encode()
    if compression == "plain":
        path.write_bytes(text)
    elif compression == "gzip":
        with gzip.open(path, "wb") as fh:
            fh.write(text)
    elif compression == "bgzip":
        out = pysam.BGZFile(str(path), "wb")
        out.write(text)
        out.close()
    else:
        raise ValueError(compression)
    return path


@pytest.fixture
def make_fasta(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_fasta(records, name='ref.fa', compression='plain')`` -> path in tmp_path."""

    def factory(records: dict[str, str], name: str = "ref.fa", compression: str = "plain", width: int = 60):
        return write_fasta(tmp_path / name, records, compression, width)

    return factory


@pytest.fixture
def tiny_records() -> dict[str, str]:
    """Three small contigs with soft-masking and N, deterministic."""
    import random

    rng = random.Random(7)
    chr1 = "".join(rng.choice("ACGT") for _ in range(1000))
    chr1 = chr1[:100] + chr1[100:150].lower() + chr1[150:]
    chr2 = "N" * 50 + "".join(rng.choice("ACGT") for _ in range(450))
    chrm = "".join(rng.choice("ACGT") for _ in range(120))
    return {"chr1": chr1, "chr2": chr2, "chrM": chrm}


@pytest.fixture
def tiny_fasta(make_fasta, tiny_records) -> Path:
    """A plain FASTA of ``tiny_records``."""
    return make_fasta(tiny_records)


VCF_HEADER = (
    "##fileformat=VCFv4.2\n"
    "##contig=<ID=chr1,length=1000>\n##contig=<ID=chr2,length=500>\n##contig=<ID=chrM,length=120>\n"
    '##INFO=<ID=SVTYPE,Number=1,Type=String,Description="type">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
)


@pytest.fixture
def make_vcf(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_vcf(rows, name='x.vcf', compression='plain'|'bgzip'|'bcf', header=VCF_HEADER)``.

    ``rows`` are (chrom, pos, id, ref, alt) tuples or raw tab-separated lines.
    """

    def factory(rows, name: str = "x.vcf", compression: str = "plain", header: str = VCF_HEADER) -> Path:
        body = []
        for row in rows:
            if isinstance(row, str):
                body.append(row)
            else:
                chrom, pos, vid, ref, alt = row
                body.append(f"{chrom}\t{pos}\t{vid}\t{ref}\t{alt}\t.\t.\t.")
        text = header + "".join(line + "\n" for line in body)
        plain = tmp_path / (name if compression == "plain" else name + ".src.vcf")
        plain.write_text(text)
        if compression == "plain":
            return plain
        if compression == "bgzip":
            out = tmp_path / (name + ".gz")
            pysam.tabix_compress(str(plain), str(out), force=True)
            return out
        out = tmp_path / (name + ".bcf")
        with (
            pysam.VariantFile(str(plain)) as src,
            pysam.VariantFile(str(out), "wb", header=src.header) as dst,
        ):
            for rec in src:
                dst.write(rec)
        return out

    return factory
