"""``genomod score`` (annotate a VCF with variant-effect scores) and ``genomod mutagenesis`` (region SNVs)."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import math
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import click

from genomod.cli import DEFAULT_CHUNK
from genomod.errors import ConfigError, InputError, check_terminated

SAMPLE_RECORDS = 200
MIN_CHECKED = 20  # below this many alleles a high mismatch rate only warns (too few to judge the build)
MISMATCH_ERROR, MISMATCH_WARN = 0.10, 0.01


def _err(msg: str) -> None:
    click.echo(msg, err=True)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'K/N' (1-based K) -> (K, N)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ConfigError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 1/4")
    return int(m.group(1)), int(m.group(2))


def shard_range(k: int, n: int, total: int) -> tuple[int, int]:
    """Record-index range [lo, hi) of shard k (1-based) of n: contiguous blocks, so gathering keeps order."""
    return (k - 1) * total // n, k * total // n


def check_build(vcf: Path, reference, sample: int = SAMPLE_RECORDS) -> tuple[float, int]:
    """REF mismatch rate over the first ``sample`` records; > 10% is an error, > 1% a loud warning."""
    from genomod.io import read_variants

    checked = mismatched = 0
    for item in read_variants(vcf, reference, strict=False):
        if item.record_index >= sample:
            break
        if item.status == "ok":
            checked += 1
        elif item.reason and "does not match reference" in item.reason:
            checked += 1
            mismatched += 1
    rate = mismatched / checked if checked else 0.0
    if checked >= MIN_CHECKED and rate > MISMATCH_ERROR:
        raise InputError(
            f"{vcf}: {rate:.1%} of REF alleles ({mismatched}/{checked} in the first {sample} records) "
            f"do not match reference {reference.path}: is the VCF on another genome build?"
        )
    if checked and rate > MISMATCH_WARN:  # also when too few to be an error
        _err(
            f"genomod: WARNING: {rate:.1%} of REF alleles ({mismatched}/{checked}) do not match reference "
            f"{reference.path}: check the genome build; mismatching alleles are skipped"
        )
    return rate, checked


def reason_key(reason: str | None) -> str:
    """Group skip reasons for the summary (drop quoted alleles and positions)."""
    text = re.sub(r"'[^']*'", "X", reason or "unknown")
    text = re.sub(r"\S+:\d+", "<pos>", text)
    return re.sub(r"\d+", "N", text)


def _load_head(path: str):
    """Load a supervised head with ``genomod.heads.load_head`` (clear error when that module is absent)."""
    if importlib.util.find_spec("genomod.heads") is None:
        raise ConfigError("--head: genomod.heads is not available in this installation")
    heads = importlib.import_module("genomod.heads")
    loader = getattr(heads, "load_head", None)
    if loader is None:
        raise ConfigError("--head: genomod.heads.load_head is not available in this installation")
    head = loader(path)
    if not hasattr(head, "predict_proba") or not hasattr(head, "layer"):
        raise ConfigError(f"--head {path}: loaded head has no predict_proba()/layer; cannot score with it")
    return head


class _Rate:
    """A rich progress column showing variants per second."""

    def __new__(cls):
        from rich.progress import ProgressColumn
        from rich.text import Text

        class RateColumn(ProgressColumn):
            def render(self, task):  # noqa: ANN001, ANN201
                speed = task.finished_speed or task.speed
                return Text(f"{speed or 0:,.1f} variants/s")

        return RateColumn()


@contextlib.contextmanager
def _progress(total: int | None) -> Iterator[Callable[[int], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as prog:
        task = prog.add_task("score", total=total)
        yield lambda n: prog.advance(task, n)


@click.command()
@click.option(
    "-i",
    "--input",
    "input_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Input VCF/VCF.gz/BCF.",
)
@click.option("-r", "--reference", required=True, type=click.Path(path_type=Path), help="Reference FASTA.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Output VCF (.vcf, .vcf.gz bgzipped + tabix-indexed, .bcf).",
)
@click.option(
    "--model", default="default", show_default=True, help="Shipped model name or checkpoint folder."
)
@click.option("--mode", type=click.Choice(["exact", "fast"]), default="exact", show_default=True)
@click.option("--window", default=None, type=int,
              help="Scoring window (bases); default: the model's training context, at most 8192.")
@click.option("--rc", is_flag=True, help="Average forward and reverse-complement strands.")
@click.option(
    "--tsv", type=click.Path(path_type=Path), default=None, help="Also write a TSV, one row per allele."
)
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--chunk-size", default=DEFAULT_CHUNK, show_default=True, type=int,
              help="Windows longer than this run one at a time in chunks of this many tokens with carried "
              "state (memory bounded by the chunk, not the window); 0: never chunk.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option(
    "--strict", is_flag=True, help="Stop at the first REF mismatch / unknown contig instead of skipping."
)
@click.option(
    "--regions",
    type=click.Path(path_type=Path),
    default=None,
    help="BED: only records overlapping these intervals (output holds just those).",
)
@click.option("--shard", default=None, help="K/N: only the K-th of N contiguous blocks of records.")
@click.option("--head", "head_path", default=None, help="Supervised head file (genomod.heads.load_head).")
@click.option(
    "--calibrate",
    is_flag=True,
    help="Also write background-calibrated scores (GENOMOD_*_CAL, *_cal columns) from the model's "
    "calibration.tsv (built with `genomod calibrate`).",
)
@click.option(
    "--calibration",
    "calibration_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Calibration table to use instead of the model's calibration.tsv (implies --calibrate).",
)
def score(
    input_path: Path,
    reference: Path,
    output: Path,
    model: str,
    mode: str,
    window: int | None,
    rc: bool,
    tsv: Path | None,
    batch_size: int,
    chunk_size: int,
    device: str,
    strict: bool,
    regions: Path | None,
    shard: str | None,
    head_path: str | None,
    calibrate: bool,
    calibration_path: Path | None,
) -> None:
    """Score every ALT allele of a VCF and write it back annotated with GENOMOD_* INFO fields."""
    from genomod.io import IntervalIndex, ReferenceGenome, VcfReader, read_bed, read_variants
    from genomod.scoring import VariantScorer
    from genomod.scoring.scorer import ROW_FIELDS
    from genomod.scoring.vcf_out import VcfTextWriter, add_header, annotate, index_vcf, vcf_write_mode
    from genomod.utils import atomic_path, check_writable

    # -- checks before any work ------------------------------------------------------------------------
    check_writable(output)
    gz = vcf_write_mode(output) == "wz"
    if tsv is not None:
        check_writable(tsv)
    if (window is not None and window < 16) or batch_size < 1:
        raise ConfigError("--window must be >= 16 and --batch-size >= 1")
    if chunk_size < 0:
        raise ConfigError(f"--chunk-size must be >= 1 (or 0: no chunking), got {chunk_size}")
    shard_kn = parse_shard(shard)
    head = _load_head(head_path) if head_path else None
    ref = ReferenceGenome(reference)
    index = IntervalIndex(read_bed(regions)) if regions is not None else None
    check_build(input_path, ref)
    lo, hi = 0, math.inf
    total: int | None = None
    if shard_kn is not None:
        with VcfReader(input_path) as reader:
            n_records = sum(1 for _ in reader)
        lo, hi = shard_range(*shard_kn, n_records)
        total = hi - lo
    scorer = VariantScorer(
        model,
        ref,
        device=device,
        window=window,
        batch_size=batch_size,
        rc=rc,
        strict=strict,
        calibrate=calibrate,
        calibration=calibration_path,
        chunk_tokens=chunk_size,
    )
    scorer.check_calibration(mode)

    def selected(rec_index: int, chrom: str, pos: int, ref_allele: str | None) -> bool:
        if not lo <= rec_index < hi:
            return False
        if index is not None:
            return bool(index.overlaps(chrom, pos - 1, max(1, len(ref_allele or "")))[0])
        return True

    items = (
        it
        for it in read_variants(input_path, ref, strict)
        if selected(it.record_index, it.chrom, it.pos, it.ref)
    )
    columns = scorer.score_columns(mode) + (("head",) if head is not None else ())
    rows = scorer.iter_scores(items, mode)
    if head is not None:
        rows = _with_head(scorer, head, rows, mode)
    tsv_cols = list(ROW_FIELDS) + list(columns) + ["pad", "status", "reason"]
    counts: Counter = Counter()
    n_records = 0
    start = time.perf_counter()
    vf = VcfReader(input_path)
    add_header(vf.header, columns, scorer.model_name, mode, scorer.window, rc, scorer.calibration)
    with contextlib.ExitStack() as stack:
        stack.callback(vf.close)
        tmp_vcf = stack.enter_context(atomic_path(output, suffix=".vcf.gz" if gz else ""))
        writer = None
        if tsv is not None:
            tmp_tsv = stack.enter_context(atomic_path(tsv))
            fh = stack.enter_context(open(tmp_tsv, "w", newline=""))
            writer = csv.DictWriter(fh, tsv_cols, delimiter="\t", extrasaction="ignore", restval="")
            writer.writeheader()
        out = stack.enter_context(VcfTextWriter(tmp_vcf, str(vf.header), bgzip=gz))
        advance = stack.enter_context(_progress(total))
        pending: dict | None = None
        for rec_index, rec in enumerate(vf):
            check_terminated()
            if rec_index >= hi:
                break
            if not selected(rec_index, rec.chrom, rec.pos, rec.ref):
                continue
            mine = []
            while True:
                if pending is None:
                    pending = next(rows, None)
                if pending is None or pending["record_index"] != rec_index:
                    break
                mine.append(pending)
                pending = None
            annotate(rec, mine, columns)
            out.write(rec)
            for r in mine:
                counts["scored" if r["status"] == "ok" else reason_key(r["reason"])] += 1
                if writer is not None:
                    writer.writerow(r)
            n_records += 1
            advance(1)
        out.close()
    if gz and index_vcf(output) is None:
        _err(f"genomod: warning: {output} not tabix-indexed (input not sorted?)")
    elapsed = time.perf_counter() - start
    n_alleles = sum(counts.values())
    _err(
        f"genomod score: {n_records} records, {n_alleles} alleles in {elapsed:.1f}s "
        f"({n_alleles / max(elapsed, 1e-9):.1f} variants/s): {counts.get('scored', 0)} scored, "
        f"{n_alleles - counts.get('scored', 0)} skipped"
    )
    for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        if reason != "scored":
            _err(f"  skipped {n}: {reason}")


def _with_head(scorer, head, rows: Iterator[dict], mode: str, chunk: int = 256) -> Iterator[dict]:
    """Add a ``head`` column: P(damaging) from the head on pooled ref/alt embeddings (per chunk of rows).

    The head's feature spec decides the features (``genomod.heads.build_features``); a zero-shot column,
    when asked for, is the negated score of this run (higher = damaging). Pooling radius: the head's
    ``meta['radius']`` (default 64).
    """
    import numpy as np

    from genomod.heads.base import build_features

    score_col = "delta_ll_mean" if mode == "exact" else "delta_fast"
    radius = int(getattr(head, "meta", {}).get("radius", 64))
    while True:
        block = list(islice(rows, chunk))
        if not block:
            return
        ok = [r for r in block if r["status"] == "ok"]
        for r in block:
            r["head"] = math.nan
        if ok:
            tuples = [(r["chrom"], r["pos"], r["ref"], r["alt"]) for r in ok]
            emb = scorer.embed(tuples, layers=[head.layer], radius=radius)
            zero = -np.array([r[score_col] for r in ok], dtype=float)
            X = build_features(emb, head.feature_spec, head.layer, zero)
            good = np.isfinite(X).all(axis=1)
            pred = np.full(len(ok), np.nan)
            if good.any():
                pred[good] = head.predict_proba(X[good])
            for r, p in zip(ok, pred):
                r["head"] = float(p)
        yield from block


@click.command()
@click.option("-r", "--reference", required=True, type=click.Path(path_type=Path), help="Reference FASTA.")
@click.option("--region", required=True, help="CONTIG:START-END (1-based inclusive).")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), default=None, help="TSV output (default stdout)."
)
@click.option("--png", type=click.Path(path_type=Path), default=None, help="Heatmap PNG (position x base).")
@click.option(
    "--model", default="default", show_default=True, help="Shipped model name or checkpoint folder."
)
@click.option("--window", default=None, type=int,
              help="Window (bases); default: the model's training context, at most 8192.")
@click.option("--rc", is_flag=True, help="Average forward and reverse-complement strands.")
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True)
def mutagenesis(
    reference: Path,
    region: str,
    output: Path | None,
    png: Path | None,
    model: str,
    window: int | None,
    rc: bool,
    batch_size: int,
    device: str,
) -> None:
    """Fast score of every possible SNV in a region (TSV and optional heatmap)."""
    import numpy as np

    from genomod.io import ReferenceGenome, parse_region
    from genomod.scoring import VariantScorer
    from genomod.scoring.fast import site_logprobs, snv_score
    from genomod.utils import atomic_path, check_writable

    for p in (output, png):
        if p is not None:
            check_writable(p)
    iv = parse_region(region)
    ref = ReferenceGenome(reference)
    contig = ref.resolve(iv.contig)
    size = ref.lengths[contig]
    if iv.end > size:
        raise InputError(f"region {region}: end {iv.end} is beyond {contig} (length {size})")
    if window is not None and window < 16:
        raise ConfigError("--window must be >= 16")
    scorer = VariantScorer(model, ref, device=device, window=window, batch_size=batch_size, rc=rc)
    seq = ref.fetch(contig, iv.start, iv.end).upper()
    lps = site_logprobs(
        scorer.model, ref.fetch, contig, size, range(iv.start, iv.end), scorer.window, rc, batch_size,
        chunk_size=scorer.chunk_tokens,
    )
    matrix = np.full((4, iv.end - iv.start), np.nan)
    lines = ["chrom\tpos\tref\talt\tdelta_fast"]
    for j, base in enumerate(seq):
        if base not in "ACGT":
            continue
        for b, alt in enumerate("ACGT"):
            if alt == base:
                matrix[b, j] = 0.0
                continue
            val = snv_score(lps[iv.start + j], base, alt)
            matrix[b, j] = val
            lines.append(f"{contig}\t{iv.start + j + 1}\t{base}\t{alt}\t{val:.6g}")
    text = "\n".join(lines) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        with atomic_path(output) as tmp:
            tmp.write_text(text)
    if png is not None:
        _heatmap(matrix, seq, contig, iv.start, png, scorer.model_name)
    _err(f"genomod mutagenesis: {len(lines) - 1} SNVs scored in {contig}:{iv.start + 1}-{iv.end}")


def _heatmap(matrix, seq: str, contig: str, start: int, png: Path, model: str) -> None:
    """Position x base heatmap of fast scores (matplotlib Agg), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from genomod.utils import atomic_path

    width = min(40.0, max(6.0, matrix.shape[1] / 25))
    fig, ax = plt.subplots(figsize=(width, 2.4))
    lim = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
    im = ax.imshow(matrix, aspect="auto", cmap="RdBu", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_yticks(range(4), list("ACGT"))
    ax.set_xlabel(f"{contig} position (1-based, from {start + 1})")
    ax.set_title(f"in-silico mutagenesis, fast score log p(alt) - log p(ref) [{model}]")
    ticks = np.linspace(0, matrix.shape[1] - 1, num=min(10, matrix.shape[1])).astype(int)
    ax.set_xticks(ticks, [str(start + 1 + t) for t in ticks])
    fig.colorbar(im, ax=ax, fraction=0.02)
    fig.tight_layout()
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
