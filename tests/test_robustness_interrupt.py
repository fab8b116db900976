"""Killing `genomod score` mid-run never leaves a partial file under the output name; a rerun equals a clean run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pysam
import pytest

from genomod.checkpoint import save_model
from tests.model_helpers import tiny_test_model


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    d = tmp_path_factory.mktemp("interrupt")
    rng = random.Random(11)
    seq = "".join(rng.choice("ACGT") for _ in range(30_000))
    (d / "ref.fa").write_text(">chr1\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    header = "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=30000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    rows = []
    for pos in range(100, 29_900, 7):
        ref = seq[pos - 1]
        rows.append(f"chr1\t{pos}\t.\t{ref}\t{'A' if ref != 'A' else 'C'}\t.\tPASS\t.\n")
    (d / "in.vcf").write_text(header + "".join(rows))
    save_model(tiny_test_model(0), d / "model")
    return d


@pytest.fixture(scope="module")
def clean_records(job):
    """Records of one uninterrupted run (the reference for reruns)."""
    out = job / "clean.vcf"
    subprocess.run(_cmd(job, out), env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True, capture_output=True)
    return _records(out)


def _cmd(d: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "genomod", "score", "-i", str(d / "in.vcf"), "-r", str(d / "ref.fa"), "-o", str(out),
            "--model", str(d / "model"), "--window", "128", "--mode", "exact", "--device", "cpu"]


def _records(path: Path) -> list[tuple]:
    with pysam.VariantFile(str(path)) as vf:
        return [(r.chrom, r.pos, r.ref, r.alts, tuple(sorted(dict(r.info).items()))) for r in vf]


def _interrupt(cmd: list[str], env: dict, folder: Path, temp_glob: str, sig: int, delay: float,
               cwd: Path | None = None) -> None:
    """Start ``cmd``, wait until its temporary output exists in ``folder``, send ``sig`` ``delay`` s later.

    SIGTERM must end it with exit 143, a 'terminated' message and its temporary output removed.
    """
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not list(folder.glob(temp_glob)) and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(delay)
    assert proc.poll() is None, "the job finished before it could be interrupted; make the input larger"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    stderr = proc.stderr.read().decode()
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "terminated" in stderr, stderr
        assert not list(folder.glob(temp_glob.split("/")[0])), "SIGTERM must remove the temporary output"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_score_leaves_no_partial_output_and_rerun_matches(job, clean_records, sig, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out.vcf"
    _interrupt(_cmd(job, out), env, tmp_path, ".out.vcf.*", sig, delay=0.5)
    assert not out.exists()
    # rerun to completion: the same records as an uninterrupted run
    subprocess.run(_cmd(job, out), env=env, check=True, capture_output=True)
    assert _records(out) == clean_records
    assert len(clean_records) == len(range(100, 29_900, 7))


# ---- data_prep.make_shards -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_fasta(tmp_path_factory):
    """6 Mb of random sequence: with stride 32 the shards take a few seconds to write."""
    d = tmp_path_factory.mktemp("shards_kill")
    rng = random.Random(5)
    with open(d / "genome.fa", "w") as fh:
        for name in ("chr1", "chr2", "chr3"):
            seq = "".join(rng.choices("ACGT", k=2_000_000))
            fh.write(f">{name}\n" + "\n".join(seq[i : i + 80] for i in range(0, len(seq), 80)) + "\n")
    return d / "genome.fa"


def _shards_cmd(fasta: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "data_prep.make_shards", "--fasta", str(fasta), "--out", str(out), "--window", "256",
            "--stride", "32", "--val-contigs", "chr3", "--no-progress", "--cache-dir", str(out.parent / "cache")]


def _shard_content(out: Path) -> dict:
    import json

    import h5py

    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("created",):
        manifest.pop(key)
    content = {"manifest": manifest}
    for split in ("train", "val"):
        with h5py.File(out / f"{split}.h5", "r") as fh:
            content[split] = (fh["tokens"][:].tobytes(), fh["index"][:].tobytes())
    return content


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_make_shards_leaves_no_output_and_rerun_matches(big_fasta, sig, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[1]
    clean = tmp_path / "clean"
    subprocess.run(_shards_cmd(big_fasta, clean), env=env, check=True, capture_output=True, cwd=root)
    out = tmp_path / "shards"
    _interrupt(_shards_cmd(big_fasta, out), env, tmp_path, ".shards.tmp-*/train.h5", sig, delay=0.1, cwd=root)
    assert not out.exists(), "a killed make_shards must not leave a folder under the final name"
    subprocess.run(_shards_cmd(big_fasta, out), env=env, check=True, capture_output=True, cwd=root)
    assert _shard_content(out) == _shard_content(clean)
