"""``genomod calibrate``: build a model's background calibration table (calibration.tsv) for --calibrate."""

from __future__ import annotations

import time
from pathlib import Path

import click

from genomod.errors import ConfigError


@click.command()
@click.option("--model", default="default", show_default=True, help="Shipped model name or checkpoint folder.")
@click.option("-r", "--reference", "references", multiple=True, required=True,
              type=click.Path(path_type=Path),
              help="Background FASTA (repeatable); sites are sampled uniformly over all their ACGT positions.")
@click.option("--sites", "n_sites", required=True, type=click.IntRange(1),
              help="Number of background positions to sample (all 3 SNVs of each are scored).")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["fast", "exact", "embed"]), default=("fast",),
              show_default=True,
              help="Score(s) to calibrate (repeatable): fast, exact (delta LL) and embed (delta_embed, from exact "
                   "mode's forwards: exact and embed together cost one exact pass).")
@click.option("--window", default=None, type=click.IntRange(16),
              help="Scoring window (bases); default: the model's training context, at most 8192. Scores are "
                   "calibrated only with the window the table was built for.")
@click.option("--rc", is_flag=True,
              help="Also tabulate strand-averaged scores (for scoring with --rc); forward rows are always written.")
@click.option("--exclude", "exclude", type=click.Path(path_type=Path), default=None,
              help="BED of intervals never sampled (e.g. the variants' own loci, coding exons).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the site sampling.")
@click.option("--cluster", type=click.IntRange(1), default=1, show_default=True,
              help="Sample runs of up to N consecutive positions (N = window/2 lets fast mode score a whole "
                   "tile per forward: many more sites for the same time).")
@click.option("--min-count", type=click.IntRange(1), default=10, show_default=True,
              help="Sites a 5-mer (then 3-mer) cell needs before lookups stop backing off (stored in the table).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Output table; a folder means FOLDER/calibration.tsv. Write it beside the checkpoint's "
                   "model.safetensors (as calibration.tsv) for `genomod score --calibrate` to find it.")
def calibrate(model: str, references: tuple[Path, ...], n_sites: int, modes: tuple[str, ...], window: int | None,
              rc: bool, exclude: Path | None, seed: int, cluster: int, min_count: int, batch_size: int,
              device: str, out: Path) -> None:
    """Build a background calibration table: the model's mean score per 5-base context and ALT.

    Calibrated scores (`genomod score --calibrate`, `genomod eval brca1 --calibrate`) are the raw score minus
    this mean, which removes the context (mutation-rate-like) component of the model's scores.
    """
    from genomod.checkpoint import load_model
    from genomod.io import ReferenceGenome, read_bed
    from genomod.scoring.calibration import TABLE_NAME, build_calibration_table
    from genomod.utils import check_writable

    # -- checks before any work ------------------------------------------------------------------------
    if out.is_dir():
        out = out / TABLE_NAME
    check_writable(out)
    refs = [ReferenceGenome(r) for r in references]
    if exclude is not None:
        read_bed(exclude)  # malformed BED: one-line error now, not after the scan
    if not modes:
        raise ConfigError("--mode: give fast, exact and/or embed")
    net = load_model(model, device=device)
    start = time.perf_counter()
    table = build_calibration_table(net, refs, n_sites, modes=modes, window=window, rc=rc, exclude_bed=exclude,
                                    seed=seed, batch_size=batch_size, min_count=min_count, progress=True,
                                    cluster=cluster)
    path = table.save(out)
    elapsed = time.perf_counter() - start
    click.echo(f"genomod calibrate: {table.n_sites()} sites x 3 SNVs per mode ({', '.join(modes)}"
               f"{', rc' if rc else ''}), window {table.window}, in {elapsed:.1f}s; wrote {path}", err=True)
    for mode, r in table.keys():
        n = table.counts(mode, r)
        _, level = table.resolved(mode, r)
        cells = int((level > 0).sum())
        click.echo(f"  {mode} rc={int(r)}: {int((n >= table.min_count).sum())} of {cells} 5-mer x ALT cells with "
                   f">= {table.min_count} sites, {int((level == 3).sum())} backed off to 3-mer, "
                   f"{int((level == 1).sum())} to 1-base", err=True)
