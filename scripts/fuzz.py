"""Fuzz genomod's parsers: FASTA reader, VCF records, training/model configs and the tokenizer.

Each target takes bytes and may only fail with a ``GenomodError`` (a clear, one-line error); any other
exception, a hang or a crash is a finding. With atheris (``pip install -e ".[fuzz]"``) the targets run
coverage-guided under libFuzzer; without it a seeded random mutator runs the same targets.

    python scripts/fuzz.py --targets fasta vcf config tokenizer --seconds 600 --json benchmarks/results/fuzz.json
    python scripts/fuzz.py --replay tests/data/fuzz_regressions      # rerun every saved finding

Findings are copied to ``tests/data/fuzz_regressions/<target>/`` (``--save-findings``); the test suite
replays them (tests/test_fuzz_regressions.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MALFORMED = ROOT / "tests" / "data" / "malformed"
TARGET_NAMES = ("fasta", "vcf", "config", "tokenizer")

_REF_SEQ = "".join(random.Random(0).choice("ACGT") for _ in range(300))
_VCF_HEADER = (b"##fileformat=VCFv4.2\n##contig=<ID=chr1,length=300>\n"
               b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")


class Harness:
    """The four targets, sharing one scratch folder and one small reference (built once)."""

    def __init__(self, scratch: Path) -> None:
        from genomod.errors import GenomodError
        from genomod.io import ReferenceGenome

        self.GenomodError = GenomodError
        self.scratch = scratch
        self.cache = scratch / "cache"
        ref = scratch / "ref.fa"
        ref.write_text(">chr1\n" + "\n".join(_REF_SEQ[i : i + 60] for i in range(0, 300, 60)) + "\n")
        self.reference = ReferenceGenome(ref, cache_dir=self.cache)
        self.targets: dict[str, Callable[[bytes], None]] = {
            "fasta": self.fasta, "vcf": self.vcf, "config": self.config, "tokenizer": self.tokenizer,
        }

    def _file(self, name: str, data: bytes) -> Path:
        folder = self.scratch / "case"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        path = folder / name
        path.write_bytes(data)
        return path

    def run(self, target: str, data: bytes) -> None:
        """Run one input; GenomodError is the expected way to reject it."""
        with contextlib.suppress(self.GenomodError):
            self.targets[target](data)

    def fasta(self, data: bytes) -> None:
        from genomod.io import ReferenceGenome

        ref = ReferenceGenome(self._file("x.fa", data), cache_dir=self.cache)
        try:
            for name in ref.contigs[:20]:
                size = ref.lengths[name]
                seq = ref.fetch(name, 0, min(size, 5000))
                assert len(seq) == min(size, 5000), "fetch returned the wrong length"
                assert seq.isalpha() or not seq, "fetch returned non-letters"
                if size:
                    w = ref.window(name, size // 2, 16)
                    assert len(w.seq) == 16
        finally:
            ref.close()

    def vcf(self, data: bytes) -> None:
        from genomod.io import read_variants

        # first byte odd: the whole file is fuzzed; even: a valid header followed by fuzzed records
        body = data[1:] if data[:1] and data[0] & 1 else _VCF_HEADER + data[1:]
        path = self._file("x.vcf", body)
        for item in read_variants(path, self.reference):
            if item.status == "ok":
                assert self.reference.fetch(item.contig, item.pos - 1, item.pos - 1 + len(item.ref)).upper() \
                    == item.ref, "accepted a variant whose REF does not match"

    def config(self, data: bytes) -> None:
        import yaml

        from genomod.errors import ConfigError
        from genomod.model import ModelConfig
        from genomod.train.config import load_config

        suffix = ".json" if data[:1] == b"{" else ".yaml"
        path = self._file("x" + suffix, data)
        with contextlib.suppress(ConfigError):
            load_config(path, ["train.max_steps=1"])
        try:
            doc = yaml.safe_load(data.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError, RecursionError):
            return
        if isinstance(doc, dict):
            model = doc.get("model", doc)
            if isinstance(model, dict):
                cfg = ModelConfig.from_dict(model, source=str(path))
                assert ModelConfig.from_dict(cfg.to_dict()) == cfg, "config does not round-trip"

    def tokenizer(self, data: bytes) -> None:
        import numpy as np

        from genomod.tokenizer import decode, encode, encode_batch, reverse_complement, reverse_complement_str

        text = data.decode("latin-1")
        tokens, mask = encode(text, return_mask=True)  # non-ASCII -> InputError (expected)
        assert len(tokens) == len(text) == len(mask)
        out = decode(tokens)
        assert set(out) <= set("ACGTN") and len(out) == len(text)
        assert np.array_equal(reverse_complement(reverse_complement(tokens)), tokens)
        acgtn = out
        assert reverse_complement_str(reverse_complement_str(acgtn)) == acgtn
        batch = encode_batch([text, text[: len(text) // 2]], as_torch=False)
        assert batch.shape[0] == 2


def seeds(target: str) -> list[bytes]:
    """Starting inputs: small valid files plus the malformed corpus files of the same kind."""
    fa = (">chr1 test\n" + "\n".join(_REF_SEQ[i : i + 60] for i in range(0, 300, 60)) + "\n>chr2\nACGTN\nacg\n")
    rows = b"".join(f"chr1\t{p}\t.\t{_REF_SEQ[p - 1]}\tA,T\t.\tPASS\t.\n".encode() for p in (5, 90, 200))
    out: list[bytes] = {
        "fasta": [fa.encode(), fa.replace("\n", "\r\n").encode()],
        "vcf": [b"\x00" + rows, b"\x01" + _VCF_HEADER + rows],
        "config": [b"model:\n  preset: tiny\n  hidden_size: 64\ntrain:\n  lr: 0.001\n  betas: [0.9, 0.95]\n",
                   b'{"model": {"preset": null, "hidden_size": 32, "layer_types": ["SE", "MHA"]}}',
                   b"data:\n  shards: [a, b]\n  window: 64\ncheckpoint:\n  keep_last: 2\n"],
        "tokenizer": [b"ACGTNacgtnRYKM", b"ACGT" * 64, bytes(range(256))],
    }[target]
    kinds = {"fasta": ("fasta", "fai"), "vcf": ("vcf",), "config": ("config",), "tokenizer": ()}[target]
    for kind in kinds:
        for path in sorted((MALFORMED / kind).glob("*")):
            if path.is_file() and path.stat().st_size < 100_000 and not path.name.endswith(".fai"):
                data = path.read_bytes()
                out.append((b"\x01" + data) if target == "vcf" else data)
    return out


# ---- engines ------------------------------------------------------------------------------------------------
def _mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = bytes(rng.choice(b"\n\t\r >#.,-0123456789ACGTNacgtn*<:={}[]") for _ in range(rng.randint(1, 8)))
        elif op == 2 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 3 and buf:
            a = rng.randrange(len(buf))
            buf[pos:pos] = buf[a : a + rng.randint(1, 32)]
        elif op == 4:
            other = rng.choice(pool)
            a = rng.randrange(len(other) + 1)
            buf[pos:] = other[a:]
        else:
            buf = buf[:pos]
    return bytes(buf)


def random_fuzz(harness: Harness, target: str, seconds: float, seed: int, max_runs: int | None,
                findings: Path) -> dict:
    """Seeded random mutation of the seeds; returns stats and saves inputs that raise unexpected errors."""
    rng = random.Random(seed)
    pool = seeds(target)
    runs, found, start = 0, [], time.monotonic()
    while time.monotonic() - start < seconds and (max_runs is None or runs < max_runs):
        data = _mutate(rng, rng.choice(pool), pool)
        runs += 1
        try:
            harness.run(target, data)
        except Exception as exc:  # noqa: BLE001 - every other exception is a finding
            name = f"crash-{target}-{runs:07d}"
            findings.mkdir(parents=True, exist_ok=True)
            (findings / name).write_bytes(data)
            found.append({"file": name, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        else:
            if len(pool) < 500 and rng.random() < 0.01:
                pool.append(data)
    return {"engine": "random", "runs": runs, "seconds": round(time.monotonic() - start, 1), "findings": found}


def atheris_worker(target: str, seconds: int, findings: Path, corpus: Path, rss_limit_mb: int) -> None:
    """Child process: coverage-guided fuzzing of one target under libFuzzer (stops at the first finding)."""
    import atheris
    import numpy  # noqa: F401 - imported before instrumentation: only genomod is instrumented
    import pysam  # noqa: F401
    import torch  # noqa: F401
    import yaml  # noqa: F401

    with atheris.instrument_imports(include=["genomod"]):
        import genomod.io
        import genomod.model
        import genomod.tokenizer
        import genomod.train.config  # noqa: F401
    scratch = Path(tempfile.mkdtemp(prefix="genomod-fuzz-"))
    harness = Harness(scratch)
    corpus.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seeds(target)):
        (corpus / f"seed-{i:03d}").write_bytes(data)
    findings.mkdir(parents=True, exist_ok=True)
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-timeout=20", f"-rss_limit_mb={rss_limit_mb}",
                   f"-artifact_prefix={findings}/{target}-", "-print_final_stats=1", str(corpus)],
                  lambda data: harness.run(target, data))
    atheris.Fuzz()


def run_atheris(target: str, seconds: int, findings: Path, log_dir: Path, rss_limit_mb: int = 4096) -> dict:
    """Run the atheris worker in a child process at low priority; parse libFuzzer's statistics."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"fuzz-{target}.log"
    corpus = log_dir / f"corpus-{target}"
    cmd = ["nice", "-n", "10", sys.executable, __file__, "--worker", target, "--seconds", str(seconds),
           "--findings", str(findings), "--corpus", str(corpus), "--rss-limit-mb", str(rss_limit_mb)]
    start = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    text = log.read_text(errors="replace")
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", text)
    crashes = sorted(p.name for p in findings.glob(f"{target}-*")) if findings.exists() else []
    return {"engine": f"atheris {_atheris_version()} (libFuzzer)", "returncode": proc.returncode,
            "runs": int(runs[-1]) if runs else None, "seconds": round(time.monotonic() - start, 1),
            "coverage_edges": int(cov[-1][0]) if cov else None, "features": int(cov[-1][1]) if cov else None,
            "corpus_files": len(list(corpus.glob("*"))), "findings": crashes, "log": str(log)}


def _atheris_version() -> str:
    try:
        from importlib.metadata import version

        return version("atheris")
    except Exception:  # noqa: BLE001
        return "?"


def replay(folder: Path) -> list[str]:
    """Run every saved input under ``folder/<target>/``; return the ones that still fail."""
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        harness = Harness(Path(tmp))
        for target in TARGET_NAMES:
            for path in sorted((folder / target).glob("*")) if (folder / target).is_dir() else []:
                try:
                    harness.run(target, path.read_bytes())
                except Exception as exc:  # noqa: BLE001
                    failures.append(f"{target}/{path.name}: {type(exc).__name__}: {exc}")
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="+", default=list(TARGET_NAMES), choices=TARGET_NAMES)
    ap.add_argument("--seconds", type=int, default=600, help="per target (default 600 = 10 minutes)")
    ap.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    ap.add_argument("--parallel", type=int, default=1, help="targets fuzzed at once (atheris engine)")
    ap.add_argument("--seed", type=int, default=0, help="random engine seed")
    ap.add_argument("--rss-limit-mb", type=int, default=4096,
                    help="libFuzzer memory limit; atheris itself grows by a few hundred bytes per run at high rates")
    ap.add_argument("--findings", type=Path, default=Path("work_local/fuzz/findings"))
    ap.add_argument("--save-findings", type=Path, default=None,
                    help="copy findings into this folder (e.g. tests/data/fuzz_regressions)")
    ap.add_argument("--json", type=Path, default=None, help="write the run log here")
    ap.add_argument("--replay", type=Path, default=None, help="replay saved inputs and exit")
    ap.add_argument("--worker", choices=TARGET_NAMES, help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        atheris_worker(args.worker, args.seconds, args.findings, args.corpus, args.rss_limit_mb)
        return 0
    if args.replay:
        failures = replay(args.replay)
        print("\n".join(failures) or f"{args.replay}: every saved input is handled")
        return 1 if failures else 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _has_atheris() else "random"
    results: dict[str, dict] = {}
    if engine == "atheris":
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, args.parallel)) as pool:
            futures = {t: pool.submit(run_atheris, t, args.seconds, args.findings / t, args.findings.parent / "logs",
                                      args.rss_limit_mb) for t in args.targets}
            results = {t: f.result() for t, f in futures.items()}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            harness = Harness(Path(tmp))
            for t in args.targets:
                results[t] = random_fuzz(harness, t, args.seconds, args.seed, None, args.findings / t)
    for t, r in results.items():
        print(f"{t:10s} {r['engine']}: {r['runs']} runs in {r['seconds']} s, findings: {len(r['findings'])}")
        if args.save_findings and r["findings"]:
            dest = args.save_findings / t
            dest.mkdir(parents=True, exist_ok=True)
            for f in (args.findings / t).glob("*"):
                shutil.copy(f, dest / f.name)
    if args.json:
        import genomod

        doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "genomod": genomod.__version__,
               "python": platform.python_version(), "machine": platform.platform(), "cpus": os.cpu_count(),
               "seconds_per_target": args.seconds, "parallel": args.parallel, "targets": results}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def _has_atheris() -> bool:
    import importlib.util

    return importlib.util.find_spec("atheris") is not None


if __name__ == "__main__":
    sys.exit(main())
