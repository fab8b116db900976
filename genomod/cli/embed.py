"""``genomod embed``: per-position (or mean-pooled) hidden states of FASTA regions, chunked, to .h5/.npz."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from genomod.cli import DEFAULT_CHUNK
from genomod.errors import ConfigError


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[str, int], None]]:
    """A rich bar over model chunks (stderr, only on a terminal) showing the region and bases/s."""
    from genomod.utils import progress_bar

    start, done = time.perf_counter(), [0]
    with progress_bar("embedding {task.description}", "chunks {task.fields[rate]}") as prog:
        task = prog.add_task("", total=total, rate="")

        def advance(region: str, tokens: int) -> None:
            done[0] += tokens
            rate = f"{done[0] / max(time.perf_counter() - start, 1e-9):,.0f} bases/s"
            prog.update(task, advance=1, description=region, rate=rate)

        yield advance


@click.command()
@click.option("-i", "--input", "-r", "--reference", "fasta", required=True, type=click.Path(path_type=Path),
              help="FASTA (plain, gzip or bgzip).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output .h5/.hdf5 (one dataset per region) or .npz (one array per region).")
@click.option("--region", "regions", multiple=True, metavar="CONTIG:START-END",
              help="Region (1-based inclusive); repeatable. Default: every contig whole.")
@click.option("--regions", "--bed", "bed", type=click.Path(path_type=Path), default=None,
              help="BED file of regions (its 4th column, when present, names the output array).")
@click.option("--model", default="default", show_default=True, help="Shipped model name or checkpoint folder.")
@click.option("--layer", default=None,
              help="Block index (-1 = last) or module name (e.g. blocks.3, blocks.3.mlp.l3, norm). Default: last block.")
@click.option("--pool", type=click.Choice(["none", "mean"]), default="none", show_default=True,
              help="none: one vector per position; mean: one vector per region.")
@click.option("--rc", is_flag=True, help="Average with the reverse-complement strand (flipped back to positions).")
@click.option("--chunk-size", default=DEFAULT_CHUNK, show_default=True, type=int,
              help="Tokens per model forward; state is carried between chunks, so memory is bounded by it.")
@click.option("--float16", "float16", is_flag=True, help="Store values as float16 (half the file size).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
def embed(fasta: Path, output: Path, regions: tuple[str, ...], bed: Path | None, model: str, layer: str | None,
          pool: str, rc: bool, chunk_size: int, float16: bool, device: str) -> None:
    """Hidden states of one layer over FASTA regions, in chunks with carried state, written as they come."""
    from genomod.checkpoint import load_model
    from genomod.io import ReferenceGenome
    from genomod.scoring.embed import (
        count_chunks,
        embed_regions,
        output_format,
        region_name,
        resolve_layer,
        resolve_regions,
    )
    from genomod.utils import check_writable

    # -- checks before any work ------------------------------------------------------------------------
    output_format(output)
    check_writable(output)
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size must be >= 1, got {chunk_size}")
    ref = ReferenceGenome(fasta)
    ivs = resolve_regions(ref, regions, bed)
    net = load_model(model, device=device)
    layer_name = resolve_layer(net, layer)
    longest = max(iv.end - iv.start for iv in ivs)
    if longest > net.config.max_seqlen:
        click.echo(f"genomod embed: note: regions up to {longest:,} bases, longer than the model's training context "
                   f"({net.config.max_seqlen:,})", err=True)
    start = time.perf_counter()
    with _progress(count_chunks(ivs, chunk_size, rc)) as advance:
        embed_regions(net, ref, output, ivs, layer=layer_name, pool=pool, rc=rc, chunk_size=chunk_size,
                      float16=float16, progress=advance, meta={"model_source": str(model)})
    elapsed = time.perf_counter() - start
    bases = sum(iv.end - iv.start for iv in ivs)
    first = region_name(ivs[0]) + (f" and {len(ivs) - 1} more" if len(ivs) > 1 else "")
    click.echo(f"genomod embed: {len(ivs)} region(s) ({first}), {bases:,} bases in {elapsed:.1f}s "
               f"({bases * (2 if rc else 1) / max(elapsed, 1e-9):,.0f} tokens/s), layer {layer_name}, pool {pool} "
               f"-> {output}", err=True)
