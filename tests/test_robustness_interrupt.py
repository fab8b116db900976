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


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_score_leaves_no_partial_output_and_rerun_matches(job, clean_records, sig, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out.vcf"
    proc = subprocess.Popen(_cmd(job, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait until it is writing (its temporary file exists), then kill it mid-run
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".out.vcf.*")) and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "scoring finished before it could be interrupted; make the input larger"
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert not out.exists()
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and b"terminated" in proc.stderr.read()
        assert not list(tmp_path.glob(".out.vcf.*")), "SIGTERM must remove the temporary file"
    # rerun to completion: the same records as an uninterrupted run
    subprocess.run(_cmd(job, out), env=env, check=True, capture_output=True)
    assert _records(out) == clean_records
    assert len(clean_records) == len(range(100, 29_900, 7))
