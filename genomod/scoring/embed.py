"""Embeddings of long sequences: per-position hidden states of one layer, streamed to .h5 / .npz.

A region runs through ``HybridModel.iter_chunks`` (chunked inference with carried state: the same values as
one forward, within float32 tolerance), and each chunk's hidden states are written to the output at once,
so memory is bounded by the chunk (plus attention K/V) whatever the region length; a 131 kb region of a
192-wide layer is ~100 MB of float32 on disk, not in memory. ``rc`` averages each position with the
reverse-complement strand's value at the same base (the RC run is flipped back; written over the forward
values chunk by chunk). ``pool="mean"`` keeps only a running sum: one vector per region.

Output (written to a temporary file beside it and renamed when complete):
- ``.h5``/``.hdf5``: one dataset per region, named as the region (``contig:start-end``, 1-based inclusive,
  or the BED name), shape (length, width) or (width,) when pooled, attributes ``contig``/``start``/``end``
  (0-based half-open); the file attribute ``genomod_meta`` holds the settings as JSON.
- ``.npz``: the same arrays under the region names, and ``_meta`` (JSON string) with the settings and
  every region's coordinates. Arrays are built in ``.npy`` files beside the output (plain file I/O, not
  memory maps, whose pages would count toward the process's memory) and zipped uncompressed.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from genomod.errors import ConfigError, InputError, check_terminated
from genomod.io import Interval, ReferenceGenome, parse_region, read_bed
from genomod.model.hybrid import DEFAULT_CHUNK, HybridModel
from genomod.tokenizer import encode, reverse_complement

POOLS = ("none", "mean")
OUTPUT_SUFFIXES = (".h5", ".hdf5", ".npz")
META_KEY = "_meta"
Progress = Callable[[str, int], None]  # (region name, tokens of the chunk just done), once per chunk


class RowStore(Protocol):
    """What a region's per-position output must support: row-range reads and writes (numpy, h5py, _NpyFile)."""

    def __getitem__(self, rows: slice) -> Any: ...

    def __setitem__(self, rows: slice, value: np.ndarray) -> None: ...


def resolve_layer(model: HybridModel, layer: str | int | None = None) -> str:
    """Module name of the layer to read: None -> the last block; an int (negative from the end) -> that
    block (``blocks.i``); else a module name such as ``blocks.3.mlp.l3`` or ``norm`` (checked now)."""
    n = model.config.num_layers
    if layer is None:
        return f"blocks.{n - 1}"
    text = str(layer).strip()
    if text.lstrip("-").isdigit():
        i = int(text)
        if not -n <= i < n:
            raise ConfigError(f"layer {text}: the model has {n} blocks (0..{n - 1}, or -1 for the last)")
        return f"blocks.{i % n}"
    if not text or text not in dict(model.named_modules()):
        raise ConfigError(f"unknown layer {text!r}: use a block index (0..{n - 1}, -1 = last) or a module name "
                          f"such as 'blocks.{n - 1}', 'blocks.0.mlp.l3' or 'norm'")
    return text


def region_name(iv: Interval) -> str:
    """Output name of a region: its BED name, else ``contig:start-end`` (1-based inclusive)."""
    return iv.name if iv.name else f"{iv.contig}:{iv.start + 1}-{iv.end}"


def resolve_regions(reference: ReferenceGenome, regions: Iterable[Interval | str] | None = None,
                    bed: str | os.PathLike | None = None) -> list[Interval]:
    """Regions to embed, contig names as in the FASTA, checked against it, each named (``region_name``).

    ``regions`` holds Intervals or ``contig:start-end`` strings; ``bed`` adds a BED file's intervals (an
    empty BED is an error). With neither, every contig whole, named as the contig. Errors name the FASTA/BED and
    the region.
    """
    wanted: list[tuple[Interval, str]] = []
    for r in regions or ():
        wanted.append((parse_region(r) if isinstance(r, str) else r, "region"))
    if bed is not None:
        ivs = read_bed(bed)
        if not ivs:
            raise InputError(f"{bed}: BED file has no intervals")
        wanted += [(iv, f"{bed}: interval") for iv in ivs]
    if not wanted:
        wanted = [(Interval(c, 0, reference.lengths[c], c), "contig") for c in reference.contigs]
    out: list[Interval] = []
    seen: dict[str, Interval] = {}
    for iv, what in wanted:
        shown = f"{what} {region_name(iv)}"
        contig = reference.resolve(iv.contig)
        size = reference.lengths[contig]
        if iv.end <= iv.start:
            raise InputError(f"{shown}: empty interval ({iv.start}-{iv.end}, 0-based)")
        if iv.end > size:
            raise InputError(f"{shown}: end {iv.end} is beyond {contig} (length {size}) in {reference.path}")
        named = Interval(contig, iv.start, iv.end, iv.name)
        name = region_name(named)
        if "/" in name or name == META_KEY:
            raise InputError(f"{shown}: region name {name!r} cannot be used as an output key ('/' or {META_KEY!r})")
        if name in seen:
            raise InputError(f"{shown}: region name {name!r} given twice; names must be unique in the output")
        seen[name] = named
        out.append(named)
    return out


def _hidden_chunks(model: HybridModel, tokens: torch.Tensor, layer: str,
                   chunk_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, hidden (n, width) float32) per chunk of ``tokens`` (1, L)."""
    for start, out in model.iter_chunks(tokens, chunk_size, return_hidden=[layer]):
        hidden = out.hidden[layer][0].float().cpu().numpy()
        del out
        yield start, hidden


def embed_tokens(model: HybridModel, tokens: np.ndarray | torch.Tensor, layer: str, chunk_size: int = DEFAULT_CHUNK,
                 rc: bool = False, pool: str = "none", open_store: Callable[[int], RowStore] | None = None,
                 progress: Callable[[int], None] | None = None) -> np.ndarray | None:
    """Embed one token sequence (L,) chunk by chunk. ``pool="mean"`` returns the (width,) float32 mean over
    positions; ``pool="none"`` writes (L, width) rows into ``open_store(width)`` as they come and returns None.
    ``progress(n)`` after each chunk. The store is read back for the RC average, so it may be a file."""
    if pool not in POOLS:
        raise ConfigError(f"unknown pool {pool!r}; use one of {', '.join(POOLS)}")
    if pool == "none" and open_store is None:
        raise ConfigError("pool='none' needs a store for the per-position rows")
    t = torch.as_tensor(np.asarray(tokens, dtype=np.int64)) if not isinstance(tokens, torch.Tensor) else tokens.long()
    t = t.reshape(1, -1).to(model.device)
    length = t.shape[1]
    if length == 0:
        raise InputError("cannot embed an empty sequence")
    store: RowStore | None = None
    sums: list[np.ndarray] = []
    for strand in ("+", "-") if rc else ("+",):
        total = None
        for start, h in _hidden_chunks(model, reverse_complement(t) if strand == "-" else t, layer, chunk_size):
            check_terminated()
            n = len(h)
            if pool == "mean":
                part = h.sum(0, dtype=np.float64)
                total = part if total is None else total + part
            elif strand == "+":
                if store is None:
                    store = open_store(h.shape[1])
                store[start : start + n] = h
            else:  # RC rows [start, start + n) are forward positions L-start-1 down to L-start-n
                lo = length - start - n
                store[lo : lo + n] = 0.5 * (np.asarray(store[lo : lo + n], dtype=np.float32) + h[::-1])
            if progress is not None:
                progress(n)
        sums.append(total)
    if pool == "mean":
        return (np.sum(sums, axis=0) / (len(sums) * length)).astype(np.float32)
    return None


def embed_sequence(model: HybridModel, sequence: str | np.ndarray, layer: str | int | None = None,
                   chunk_size: int = DEFAULT_CHUNK, rc: bool = False, pool: str = "none") -> np.ndarray:
    """In-memory embedding of one sequence (a string or token ids): (L, width) float32, or (width,) pooled."""
    name = resolve_layer(model, layer)
    tokens = encode(sequence) if isinstance(sequence, str) else np.asarray(sequence)
    held: list[np.ndarray] = []

    def open_store(width: int) -> np.ndarray:
        held.append(np.empty((len(tokens), width), dtype=np.float32))
        return held[0]

    pooled = embed_tokens(model, tokens, name, chunk_size, rc, pool, open_store)
    return pooled if pool == "mean" else held[0]


# -- writers -----------------------------------------------------------------------------------------------
class _NpyFile:
    """A 2-D ``.npy`` written and read by row ranges with plain file I/O (bounded memory, unlike a memmap)."""

    def __init__(self, path: Path, shape: tuple[int, int], dtype: np.dtype) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.fh = open(path, "w+b")  # noqa: SIM115 (closed by close())
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.fh, header)
        self.offset = self.fh.tell()
        self.row_bytes = shape[1] * self.dtype.itemsize
        self.fh.truncate(self.offset + shape[0] * self.row_bytes)

    def _rows(self, rows: slice) -> tuple[int, int]:
        lo, hi, step = rows.indices(self.shape[0])
        if step != 1:
            raise ValueError("row ranges only")
        return lo, max(lo, hi)

    def __setitem__(self, rows: slice, value: np.ndarray) -> None:
        lo, hi = self._rows(rows)
        data = np.ascontiguousarray(value, dtype=self.dtype)
        if data.shape != (hi - lo, self.shape[1]):
            raise ValueError(f"rows {lo}:{hi} take shape {(hi - lo, self.shape[1])}, got {data.shape}")
        self.fh.seek(self.offset + lo * self.row_bytes)
        self.fh.write(data.tobytes())

    def __getitem__(self, rows: slice) -> np.ndarray:
        lo, hi = self._rows(rows)
        self.fh.seek(self.offset + lo * self.row_bytes)
        return np.frombuffer(self.fh.read((hi - lo) * self.row_bytes), dtype=self.dtype).reshape(hi - lo, -1)

    def close(self) -> None:
        self.fh.close()


class _NpzWriter:
    """Regions as ``.npy`` files in a scratch folder beside the output, zipped (stored) into ``path`` at close."""

    def __init__(self, path: Path, final: Path) -> None:
        self.path = path
        self.scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".parts", dir=path.parent))
        self.files: list[tuple[str, Path]] = []
        self._open: list[_NpyFile] = []

    def per_position(self, name: str, shape: tuple[int, int], dtype: np.dtype, attrs: dict) -> RowStore:
        f = _NpyFile(self.scratch / f"{len(self.files)}.npy", shape, dtype)
        self.files.append((name, f.path))
        self._open.append(f)
        return f

    def vector(self, name: str, value: np.ndarray, attrs: dict) -> None:
        p = self.scratch / f"{len(self.files)}.npy"
        np.save(p, value)
        self.files.append((name, p))

    def close(self, meta: dict) -> None:
        for f in self._open:
            f.close()
        with zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, p in self.files:
                zf.write(p, arcname=f"{name}.npy")
            buf = io.BytesIO()
            np.save(buf, np.array(json.dumps(meta)))
            zf.writestr(f"{META_KEY}.npy", buf.getvalue())

    def cleanup(self) -> None:
        for f in self._open:
            with contextlib.suppress(OSError):
                f.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class _H5Writer:
    """Regions as datasets of an HDF5 file (h5py), written chunk by chunk."""

    def __init__(self, path: Path) -> None:
        import h5py

        self.h5 = h5py.File(path, "w")

    def per_position(self, name: str, shape: tuple[int, int], dtype: np.dtype, attrs: dict) -> RowStore:
        rows = max(1, min(shape[0], (256 << 10) // max(1, shape[1] * np.dtype(dtype).itemsize)))
        ds = self.h5.create_dataset(name, shape=shape, dtype=dtype, chunks=(rows, shape[1]))
        ds.attrs.update(attrs)
        return ds

    def vector(self, name: str, value: np.ndarray, attrs: dict) -> None:
        self.h5.create_dataset(name, data=value).attrs.update(attrs)

    def close(self, meta: dict) -> None:
        self.h5.attrs["genomod_meta"] = json.dumps(meta)
        self.h5.close()

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.h5.close()


def output_format(path: str | os.PathLike) -> str:
    """``h5`` or ``npz`` from the output's suffix; ConfigError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"{path}: output must end in {', '.join(OUTPUT_SUFFIXES)} (HDF5 or numpy .npz)")
    return "npz" if suffix == ".npz" else "h5"


def count_chunks(regions: Sequence[Interval], chunk_size: int, rc: bool = False) -> int:
    """Model forwards ``embed_regions`` will run (for a progress bar)."""
    return sum(math.ceil((iv.end - iv.start) / chunk_size) for iv in regions) * (2 if rc else 1)


def embed_regions(
    model: HybridModel,
    reference: ReferenceGenome | str | os.PathLike,
    output: str | os.PathLike,
    regions: Iterable[Interval | str] | None = None,
    bed: str | os.PathLike | None = None,
    layer: str | int | None = None,
    pool: str = "none",
    rc: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    float16: bool = False,
    progress: Progress | None = None,
    meta: dict | None = None,
) -> dict:
    """Embed FASTA regions (all contigs when none are given) into ``output`` (.h5/.hdf5/.npz), atomically.

    Each region runs in chunks of ``chunk_size`` tokens with carried state and its rows are written as they
    come (module doc), so memory does not grow with the region. ``float16`` stores half-precision values
    (computed in the model's dtype, rounded when written). Returns the metadata written (settings, regions).
    """
    from genomod.utils import atomic_path, check_writable

    out = Path(output)
    fmt = output_format(out)
    check_writable(out)
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    if pool not in POOLS:
        raise ConfigError(f"unknown pool {pool!r}; use one of {', '.join(POOLS)}")
    ref = reference if isinstance(reference, ReferenceGenome) else ReferenceGenome(reference)
    name = resolve_layer(model, layer)
    ivs = resolve_regions(ref, regions, bed)
    dtype = np.dtype(np.float16 if float16 else np.float32)
    info = {
        "model": getattr(model.config, "name", "custom"), "layer": name, "pool": pool, "rc": bool(rc),
        "chunk_size": int(chunk_size), "dtype": dtype.name, "reference": str(ref.path), "coordinates": "0-based half-open",
        "regions": [{"name": region_name(iv), "contig": iv.contig, "start": iv.start, "end": iv.end} for iv in ivs],
        **(meta or {}),
    }
    with atomic_path(out, suffix=out.suffix) as tmp:
        writer: _NpzWriter | _H5Writer = _NpzWriter(tmp, out) if fmt == "npz" else _H5Writer(tmp)
        try:
            for iv in ivs:
                key = region_name(iv)
                attrs = {"contig": iv.contig, "start": iv.start, "end": iv.end, "layer": name}
                tokens = encode(ref.fetch(iv.contig, iv.start, iv.end))
                tick = (lambda n, key=key: progress(key, n)) if progress is not None else None

                def open_store(width: int, key: str = key, attrs: dict = attrs, length: int = len(tokens)) -> RowStore:
                    return writer.per_position(key, (length, width), dtype, attrs)

                pooled = embed_tokens(model, tokens, name, chunk_size, rc, pool, open_store, tick)
                if pooled is not None:
                    writer.vector(key, pooled.astype(dtype), attrs)
            writer.close(info)
        finally:
            writer.cleanup()
    return info
