"""``genomod score`` (annotate a VCF with variant-effect scores) and ``genomod mutagenesis`` (region SNVs).

Option parsing and printing only: the annotation itself is ``genomod.scoring.annotate``.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from genomod.cli import DEFAULT_CHUNK
from genomod.errors import ConfigError, InputError


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


def _precision_options(fn: Callable) -> Callable:
    """--dtype and --quantize (see genomod.precision), shared by score and mutagenesis."""
    fn = click.option("--quantize", type=click.Choice(["none", "int8"]), default="none", show_default=True,
                      help="Weight-only int8 Linear layers (torchao: pip install 'genomod[quant]').")(fn)
    return click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto",
                        show_default=True, help="Weights/activations dtype; auto = bfloat16 on CUDA, else the "
                        "checkpoint's (float32 for shipped models). Hyena-LI poles stay float32.")(fn)


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
    from genomod.utils import progress_bar

    with progress_bar("scoring", _Rate(), remaining=False) as prog:
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
    help="Output VCF (.vcf, or .vcf.gz bgzipped + tabix-indexed; BCF is not written).",
)
@click.option(
    "--model", default="default", show_default=True, help="Shipped model name or checkpoint folder."
)
@click.option("--mode", type=click.Choice(["exact", "fast"]), default="exact", show_default=True,
              help="exact: delta log-likelihood of the windows (GENOMOD_DLL_*) and the embedding distance "
                   "(GENOMOD_EMBED, SNVs) from the same forwards; fast: SNV scores from one forward per tile.")
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
@click.option("--head", "head_path", default=None,
              help="Supervised head: a folder saved by Head.save, or its head.json (genomod.heads.load_head).")
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
@_precision_options
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
    dtype: str,
    quantize: str,
) -> None:
    """Score every ALT allele of a VCF and write it back annotated with GENOMOD_* INFO fields."""
    from genomod.io import IntervalIndex, ReferenceGenome, read_bed
    from genomod.scoring import VariantScorer
    from genomod.scoring.annotate import VcfSource, annotate_vcf
    from genomod.scoring.vcf_out import vcf_write_mode
    from genomod.utils import check_writable

    # -- checks before any work ------------------------------------------------------------------------
    check_writable(output)
    vcf_write_mode(output)  # refuses .bcf
    if tsv is not None:
        check_writable(tsv)
    if (window is not None and window < 16) or batch_size < 1:
        raise ConfigError("--window must be >= 16 and --batch-size >= 1")
    if chunk_size < 0:
        raise ConfigError(f"--chunk-size must be >= 1 (or 0: no chunking), got {chunk_size}")
    shard_kn = parse_shard(shard)
    head = None
    if head_path:
        from genomod.heads import load_head

        head = load_head(head_path)
    ref = ReferenceGenome(reference)
    index = IntervalIndex(read_bed(regions)) if regions is not None else None
    with VcfSource(input_path, ref, strict, shard=shard_kn, regions=index) as source:
        warning = source.build.warning(ref.path)
        if warning:
            _err(f"genomod: WARNING: {warning}")
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
            dtype=dtype,
            quantize=quantize,
            chunk_tokens=chunk_size,
        )
        scorer.check_calibration(mode)
        with _progress(source.total) as advance:
            summary = annotate_vcf(source, scorer, output, mode, tsv=tsv, head=head, progress=advance)
    if summary.indexed is False:
        _err(f"genomod: warning: {output} not tabix-indexed (input not sorted?)")
    _err(
        f"genomod score: {summary.records} records, {summary.alleles} alleles in {summary.seconds:.1f}s "
        f"({summary.alleles / max(summary.seconds, 1e-9):.1f} variants/s): {summary.scored} scored, "
        f"{summary.alleles - summary.scored} skipped"
    )
    for reason, n in summary.skipped():
        _err(f"  skipped {n}: {reason}")


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
@_precision_options
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
    dtype: str,
    quantize: str,
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
    scorer = VariantScorer(model, ref, device=device, window=window, batch_size=batch_size, rc=rc, dtype=dtype,
                           quantize=quantize)
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
