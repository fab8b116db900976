"""Every broken input of tests/data/malformed (see its cases.json) through every entry point that reads it.

An error run must exit 2 with exactly one ``... error: ...`` line naming the file and the record/line, no
traceback, and nothing left in the output folder; an ok run must keep every record and report skip reasons.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pysam
import pytest

from data_prep.make_shards import main as make_shards_main
from genomod.checkpoint import save_model
from genomod.cli.main import main as genomod_main
from genomod.data_paths import brca1_reference
from tests.model_helpers import tiny_test_model

CORPUS = Path(__file__).parent / "data" / "malformed"
CASES = json.loads((CORPUS / "cases.json").read_text())["cases"]
RUNS = [(case, i) for case in CASES for i in range(len(case["runs"]))]
ENTRY_POINTS = {"genomod": genomod_main, "make_shards": make_shards_main}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """A tiny valid checkpoint and a valid shard folder shared by all cases."""
    d = tmp_path_factory.mktemp("malformed_fixtures")
    save_model(tiny_test_model(0), d / "model")
    shutil.copy(CORPUS / "good" / "ref.fa", d / "ref.fa")  # never index inside the committed corpus
    assert make_shards_main(["--fasta", str(d / "ref.fa"), "--out", str(d / "shards"),
                             "--window", "64", "--no-progress", "--cache-dir", str(d / "cache")]) == 0
    return d


def _prepare(tmp_path: Path, fixtures: Path, args: list[str]) -> tuple[list[str], Path]:
    """Copy the corpus (indexes get written beside inputs), make .fai files newer than their FASTA, fill in args."""
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    later = time.time() + 60
    for fai in corpus.glob("fai/*.fai"):
        os.utime(fai, (later, later))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    values = {"{dir}": str(corpus), "{out}": str(out_dir / "result.vcf"), "{outdir}": str(out_dir / "shards"),
              "{model}": str(fixtures / "model"), "{shards}": str(fixtures / "shards"),
              "{hg38}": str(brca1_reference("hg38"))}
    filled = []
    for a in args:
        for key, val in values.items():
            a = a.replace(key, val)
        filled.append(a)
    if filled[1:2] == ["mutagenesis"]:
        filled[filled.index("-o") + 1] = str(out_dir / "result.tsv")
    return filled, out_dir


def _records(path: Path) -> int:
    with pysam.VariantFile(str(path)) as vf:
        return sum(1 for _ in vf)


def test_corpus_is_large_and_covers_every_kind():
    kinds = {c["kind"] for c in CASES}
    assert len(CASES) >= 30
    assert {"fasta", "fai", "vcf", "bed", "config", "checkpoint"} <= kinds
    assert sum(1 for c in CASES if "bcf" in c["id"]) >= 2


def _run_id(case: dict, i: int) -> str:
    args = case["runs"][i]["args"]
    return f"{case['id']}-{args[1] if args[0] == 'genomod' else args[0]}" + ("-strict" if "--strict" in args else "")


@pytest.mark.parametrize("case,run_index", RUNS, ids=[_run_id(c, i) for c, i in RUNS])
def test_malformed_input(case, run_index, fixtures, tmp_path, capfd, monkeypatch):
    run = case["runs"][run_index]
    monkeypatch.setenv("GENOMOD_CACHE", str(tmp_path / "cache"))
    args, out_dir = _prepare(tmp_path, fixtures, run["args"])
    capfd.readouterr()
    rc = ENTRY_POINTS[args[0]](args[1:])
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert rc == run["exit"], f"{case['id']}: exit {rc}, stderr:\n{err}"
    if run["exit"] == 2:
        errors = [line for line in err.splitlines() if ": error: " in line]
        assert len(errors) == 1, f"{case['id']}: expected one error line, got:\n{err}"
        line = errors[0]
        assert line.startswith(("genomod: error: ", "make_shards: error: ")), line
        for text in run["contains"]:
            assert text in line, f"{case['id']}: {text!r} missing from {line!r}"
        left = sorted(p.name for p in out_dir.rglob("*"))
        assert not left, f"{case['id']}: output left behind: {left}"
    else:
        for text in run["contains"]:
            assert text in err, f"{case['id']}: {text!r} missing from stderr:\n{err}"
        assert _records(out_dir / "result.vcf") == run["records"]


def _first_of_each_kind() -> list[tuple[dict, int]]:
    seen: dict[str, tuple[dict, int]] = {}
    for case, i in RUNS:
        if case["runs"][i]["args"][0] == "genomod" and case["runs"][i]["exit"] == 2:
            seen.setdefault(case["kind"], (case, i))
    return list(seen.values())


@pytest.mark.parametrize("case,run_index", _first_of_each_kind(), ids=lambda x: x["id"] if isinstance(x, dict) else "")
def test_malformed_input_through_the_real_cli(case, run_index, fixtures, tmp_path):
    """The installed entry point (a fresh process): exit 2, one stderr line, no traceback, nothing written."""
    args, out_dir = _prepare(tmp_path, fixtures, case["runs"][run_index]["args"])
    env = {**os.environ, "GENOMOD_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "genomod", *args[1:]], capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("genomod: error: "), proc.stderr
    assert not list(out_dir.rglob("*"))
    debug = subprocess.run([sys.executable, "-m", "genomod", "--debug", *args[1:]], capture_output=True, text=True,
                           env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_corpus_matches_its_generator(tmp_path):
    """tests/data/malformed is exactly what scripts/make_malformed_corpus.py writes (no hand edits)."""
    proc = subprocess.run([sys.executable, "scripts/make_malformed_corpus.py", "--check", "--out", str(CORPUS)],
                          cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
