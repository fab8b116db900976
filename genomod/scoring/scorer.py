"""VariantScorer: load a model once, then score variants (exact delta LL or fast SNV scores) as a stream.

Thread/process safety: a scorer holds only read-only state after construction (the model in eval mode,
settings). Each call keeps its buffers local; the pysam FASTA handle is opened once per thread
(``threading.local``), so one scorer may be shared by several threads without reloading the model.
Pickling (e.g. to worker processes) drops the per-thread handles; they are reopened on first use.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genomod.errors import ConfigError, InputError
from genomod.io import AlleleChecker, ReferenceGenome, SkippedVariant, Variant, read_variants
from genomod.model.hybrid import DEFAULT_CHUNK, HybridModel
from genomod.scoring.exact import Site, build_site, exact_deltas, rc_deltas
from genomod.scoring.fast import TileCache, base_index, fast_rows, fast_scores, tile_pads

MODES = ("exact", "fast")
Item = Variant | SkippedVariant
ROW_FIELDS = ("chrom", "pos", "id", "ref", "alt", "record_index", "allele_index", "kind", "contig")


def _model_label(model: Any) -> str:
    return str(model) if isinstance(model, (str, os.PathLike)) else getattr(model.config, "name", "custom")


def default_window(model: HybridModel) -> int:
    """The scoring window used when none is given: the model's training context, capped at 8,192 bp."""
    return max(16, min(8192, int(model.config.max_seqlen)))


class VariantScorer:
    """Zero-shot variant-effect scores from a genomod model and a reference FASTA."""

    def __init__(
        self,
        model: str | os.PathLike | HybridModel = "default",
        reference: str | os.PathLike | ReferenceGenome | None = None,
        device: str = "auto",
        dtype: str | None = None,
        window: int | None = None,
        batch_size: int = 8,
        rc: bool = False,
        strict: bool = False,
        calibrate: bool = False,
        calibration: Any = None,
        fast_batch_size: int | None = None,
        quantize: str | None = None,
        chunk_tokens: int | None = DEFAULT_CHUNK,
    ) -> None:
        """``calibrate=True`` adds background-calibrated columns (``*_cal``, see genomod.scoring.calibration)
        from the model's ``calibration.tsv`` beside its weights; ``calibration=`` gives the table instead
        (a CalibrationTable or a calibration.tsv path) and implies ``calibrate``. ``fast_batch_size``: forward
        rows per fast-mode batch (default ``fast.fast_rows``: ~4,096 tokens per forward on CPU, else
        ``batch_size`` or more rows, ~16,384 tokens). ``dtype`` (float32/bfloat16/float16, None = auto) and
        ``quantize`` (None/"int8") are passed to ``load_model`` (see ``genomod.precision``). ``chunk_tokens``:
        windows longer than this many tokens run one sequence at a time in chunks of it with carried state
        (memory bounded by the chunk plus attention K/V, not the window); None or 0 never chunks; shorter windows
        are unaffected. (The model's ``chunk_size``; not ``iter_scores``'s ``chunk_size``, which counts variants.)"""
        if window is not None and window < 16:
            raise ConfigError(f"window must be >= 16 bases, got {window}")
        if chunk_tokens is not None and chunk_tokens < 0:
            raise ConfigError(f"chunk_tokens must be >= 1 (or 0/None: no chunking), got {chunk_tokens}")
        self.chunk_tokens = int(chunk_tokens) if chunk_tokens else None
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if fast_batch_size is not None and fast_batch_size < 1:
            raise ConfigError(f"fast_batch_size must be >= 1, got {fast_batch_size}")
        self.batch_size, self.rc, self.strict = int(batch_size), bool(rc), strict
        self.model_name = _model_label(model)
        # a folder from `genomod finetune` (variant-effect task): its backbone scores, its head adds column ``ft``
        self.finetuned = None
        if isinstance(model, (str, os.PathLike)):
            from genomod.scoring.finetuned import finetuned_variant_model

            self.finetuned = finetuned_variant_model(model)
        if isinstance(model, HybridModel):
            if dtype not in (None, "auto") or quantize not in (None, "none"):
                raise ConfigError("dtype/quantize apply when VariantScorer loads the model by name or path; for a "
                                  "model in memory call genomod.precision.apply_precision(model, dtype, quantize)")
            self.model = model.eval()
        else:
            from genomod.checkpoint import load_model

            source = self.finetuned.backbone if self.finetuned is not None else model
            self.model = load_model(source, device=device, dtype=dtype, quantize=quantize)
        # default window: the model's training context, at most Evo 2's 8,192 bp
        self.window = int(window) if window is not None else default_window(self.model)
        self.fast_batch_size = int(fast_batch_size or fast_rows(self.window, self.batch_size, self.model.device))
        if reference is None or isinstance(reference, ReferenceGenome):
            self.reference = reference
        else:
            self.reference = ReferenceGenome(reference)
        self._local = threading.local()
        self.calibration = None
        if calibrate or calibration is not None:
            self.calibration = self._load_calibration(model, calibration)

    def _load_calibration(self, model: Any, calibration: Any) -> Any:
        """The background table for this model (see __init__); its window must equal the scoring window."""
        from genomod.scoring.calibration import CalibrationTable, check_weights, load_calibration

        ckpt = (getattr(self.model, "checkpoint_info", None) or {}).get("path")
        if isinstance(calibration, CalibrationTable):
            table = calibration
            check_weights(table, ckpt)
        elif calibration is not None:  # a calibration.tsv, or a folder holding one
            table = load_calibration(calibration)
            check_weights(table, ckpt)
        elif isinstance(model, (str, os.PathLike)):
            table = load_calibration(model)
        elif ckpt is not None:
            table = load_calibration(ckpt)
        else:
            raise ConfigError("calibrate=True with an in-memory model that has no checkpoint folder: pass "
                              "calibration=<CalibrationTable or calibration.tsv path>")
        if table.window is not None and table.window != self.window:
            raise ConfigError(
                f"{table.source}: calibration table was built with window {table.window} but scoring uses window "
                f"{self.window}; score with --window {table.window} or build a table with `genomod calibrate "
                f"--window {self.window} ...`"
            )
        return table

    def check_calibration(self, mode: str) -> None:
        """ConfigError when calibration is on and its table lacks rows for ``mode`` and this scorer's rc."""
        if self.calibration is not None:
            self.calibration.require(mode, self.rc)

    # -- pickling / threads ------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _ref(self) -> ReferenceGenome:
        """This thread's handle on the reference (pysam handles must not be shared between threads)."""
        if self.reference is None:
            raise ConfigError("VariantScorer needs a reference FASTA (reference=...) to build windows")
        ref = getattr(self._local, "ref", None)
        if ref is None:
            main = threading.current_thread() is threading.main_thread()
            ref = self._local.ref = self.reference if main else self.reference.clone()
        return ref

    # -- input normalisation -----------------------------------------------------------------------------
    def variants(self, variants: Any) -> Iterator[Item]:
        """Turn a VCF path, DataFrame, pysam records, tuples or Variants into checked Variants/skips."""
        ref = self._ref()
        if isinstance(variants, (str, os.PathLike)):
            yield from read_variants(Path(variants), ref, self.strict)
            return
        try:
            import pandas as pd

            if isinstance(variants, pd.DataFrame):
                cols = {c.lower().lstrip("#"): c for c in variants.columns}
                missing = [c for c in ("chrom", "pos", "ref", "alt") if c not in cols]
                if missing:
                    raise InputError(f"DataFrame lacks column(s) {', '.join(missing)}")
                ids = variants[cols["id"]].tolist() if "id" in cols else [None] * len(variants)
                rows = zip(*(variants[cols[c]].tolist() for c in ("chrom", "pos", "ref", "alt")), ids)
                variants = ((c, p, r, a, i) for c, p, r, a, i in rows)
        except ImportError:  # pragma: no cover
            pass
        # one checker for the stream, the record index and ID given to it (as variants_from_tuples does for
        # 4-tuples): no generator, checker or dataclass copy per record
        source = "<variants>"
        checker = AlleleChecker(ref, self.strict, source)
        for index, item in enumerate(variants):
            if isinstance(item, (Variant, SkippedVariant)):
                yield item
                continue
            vid = None
            if hasattr(item, "alts") and hasattr(item, "chrom"):  # pysam VariantRecord
                alts = ",".join(item.alts) if item.alts else None
                tup, vid = (item.chrom, item.pos, item.ref, alts), item.id
            elif isinstance(item, Sequence) and len(item) == 5:
                tup, vid = tuple(item[:4]), item[4]
            else:
                tup = item
            try:
                chrom, pos, ref_allele, alt = tup
                pos = int(pos)
            except (TypeError, ValueError):
                raise InputError(f"{source}: item {index + 1}: expected (chrom, pos, ref, alt), got {tup!r}") from None
            alt_list = tuple(str(alt).split(",")) if alt not in (None, "", ".") else None
            yield from checker.check(str(chrom), pos, str(ref_allele), alt_list, None if vid in ("", ".") else vid,
                                     index, f"item {index + 1} {chrom}:{pos}")

    # -- scoring -----------------------------------------------------------------------------------------
    def score_columns(self, mode: str) -> tuple[str, ...]:
        """Score columns produced by ``mode`` (each followed by its ``*_cal`` column when calibrating)."""
        raw = ("delta_ll_mean", "delta_ll_sum") if mode == "exact" else ("delta_fast",)
        embed = ("delta_embed",) if mode == "exact" else ()
        ft = ("ft",) if getattr(self, "finetuned", None) is not None else ()
        if self.calibration is None:
            return raw + embed + ft
        if not self._calibrates_embed(mode):  # a table without embed rows calibrates delta LL only
            return tuple(c for col in raw for c in (col, f"{col}_cal")) + embed + ft
        return tuple(c for col in raw + embed for c in (col, f"{col}_cal")) + ft

    def _calibrates_embed(self, mode: str) -> bool:
        """Whether exact mode also writes ``delta_embed_cal`` (the table holds embed rows for this rc)."""
        return mode == "exact" and self.calibration is not None and self.calibration.has("embed", self.rc)

    def iter_scores(
        self, variants: Any, mode: str = "exact", chunk_size: int | None = None
    ) -> Iterator[dict]:
        """Yield one row (dict) per input allele, in input order, ``chunk_size`` variants at a time.

        Fast mode keeps the tiles it computed during the call (``TileCache``), so each tile is computed
        once whatever the chunking; by default its chunks hold whole tiles (``_fast_chunks``).
        """
        if mode not in MODES:
            raise ConfigError(f"unknown scoring mode {mode!r}; use one of {', '.join(MODES)}")
        self.check_calibration(mode)
        it = self.variants(variants)
        cache = TileCache() if mode == "fast" else None
        if chunk_size is None and mode == "fast":
            chunks: Iterator[list[Item]] = self._fast_chunks(it)
        else:
            size = chunk_size or max(256, 32 * self.batch_size)
            chunks = iter(lambda: list(islice(it, size)), [])
        for chunk in chunks:
            yield from self._score_chunk(chunk, mode, cache)

    def score(self, variants: Any, mode: str = "exact") -> Any:
        """Score everything and return a pandas DataFrame (one row per allele; use iter_scores to stream)."""
        import pandas as pd

        cols = list(ROW_FIELDS) + list(self.score_columns(mode)) + ["pad", "status", "reason"]
        return pd.DataFrame(list(self.iter_scores(variants, mode)), columns=cols)

    def _fast_chunks(self, it: Iterator[Item], max_records: int = 1 << 16) -> Iterator[list[Item]]:
        """Chunks of whole tiles: cut before the record that would add a tile past four forward batches."""
        half = self.window // 2
        max_tiles = 4 * (max(1, self.fast_batch_size // 2) if self.rc else self.fast_batch_size)
        chunk: list[Item] = []
        tiles: set[tuple[str | None, int]] = set()
        for item in it:
            key = (item.contig or item.chrom, item.start // half) if isinstance(item, Variant) else None
            if chunk and (len(chunk) >= max_records or (key is not None and key not in tiles
                                                        and len(tiles) >= max_tiles)):
                yield chunk
                chunk, tiles = [], set()
            if key is not None:
                tiles.add(key)
            chunk.append(item)
        if chunk:
            yield chunk

    def _score_chunk(self, chunk: list[Item], mode: str, cache: TileCache | None = None) -> list[dict]:
        """Full output rows of a chunk (ROW_FIELDS, score columns, pad, status, reason), in order."""
        blank = dict.fromkeys(self.score_columns(mode), math.nan)
        out: list[dict] = []
        todo: list[int] = []
        for i, item in enumerate(chunk):
            row: dict = {f: getattr(item, f, None) for f in ROW_FIELDS}
            row.update(blank)
            row.update(pad=0, status=item.status, reason=item.reason)
            if isinstance(item, Variant):
                reason = self._unscorable(item, mode)
                if reason:
                    row.update(status="skipped", reason=reason)
                else:
                    todo.append(i)
            out.append(row)
        if todo:
            scores = self._scores([chunk[i] for i in todo], mode, cache)
            for i, values in zip(todo, scores):
                out[i].update(values)
        return out

    def _scores(self, variants: list[Variant], mode: str, cache: TileCache | None = None) -> list[dict]:
        """Score columns and ``pad`` of each scorable variant (with ``*_cal`` columns when calibrating and
        ``ft`` with a fine-tuned model)."""
        scores = self._exact(variants) if mode == "exact" else self._fast(variants, cache)
        if self.calibration is not None:
            for values, cal in zip(scores, self._calibrate(variants, scores, mode)):
                values.update(cal)
        if getattr(self, "finetuned", None) is not None:
            for values, ft in zip(scores, self._finetuned(variants)):
                values["ft"] = ft
        return scores

    def _finetuned(self, variants: list[Variant]) -> list[float]:
        """The fine-tuned head's score per variant (its own window; see genomod.scoring.finetuned)."""
        ref = self._ref()
        sites = [(v.contig or ref.resolve(v.chrom), v.start, v.ref, v.alt) for v in variants]
        return self.finetuned.predict(self.model, ref.fetch, ref.lengths, sites, self.batch_size).tolist()

    def _calibrate(self, variants: list[Variant], scores: list[dict], mode: str) -> list[dict]:
        """The ``*_cal`` columns: raw minus the background mean of the site's 5-mer context and ALT.

        Non-SNVs get no entry (their columns stay NaN); contexts holding N (or past a contig edge) get NaN.
        """
        from genomod.scoring.calibration import site_context

        ref = self._ref()
        out: list[dict] = [{} for _ in variants]
        idx = [i for i, v in enumerate(variants) if v.kind == "snv"]
        if not idx:
            return out
        contexts = []
        for i in idx:
            v = variants[i]
            contig = v.contig or ref.resolve(v.chrom)
            contexts.append(site_context(ref.fetch, contig, v.start, ref.lengths[contig]))
        alts = [variants[i].alt for i in idx]
        raw_col = "delta_ll_sum" if mode == "exact" else "delta_fast"
        raw = np.array([scores[i][raw_col] for i in idx], dtype=np.float64)
        cal = self.calibration.apply(mode, self.rc, contexts, alts, raw)
        for i, val in zip(idx, cal.tolist()):
            if mode == "exact":
                out[i] = {"delta_ll_sum_cal": val, "delta_ll_mean_cal": val / (self.window - 1)}
            else:
                out[i] = {"delta_fast_cal": val}
        if self._calibrates_embed(mode):
            emb = np.array([scores[i]["delta_embed"] for i in idx], dtype=np.float64)
            for i, val in zip(idx, self.calibration.apply("embed", self.rc, contexts, alts, emb).tolist()):
                out[i]["delta_embed_cal"] = val
        return out

    def _unscorable(self, v: Variant, mode: str) -> str | None:
        if mode == "fast" and v.kind != "snv":
            return f"fast mode scores SNVs only ({v.kind}); use mode exact"
        if mode == "exact" and len(v.ref) > self.window - self.window // 2:
            return f"REF length {len(v.ref)} exceeds half the window ({self.window})"
        return None

    def _exact(self, variants: list[Variant]) -> list[dict]:
        """``delta_ll_sum``, ``delta_ll_mean``, ``delta_embed`` and ``pad`` per variant, from the same forwards;
        alleles at one site share its prefix."""
        ref = self._ref()
        groups: dict[tuple[str, int], list[int]] = {}
        for i, v in enumerate(variants):
            groups.setdefault((v.contig or ref.resolve(v.chrom), v.start), []).append(i)
        sites: list[Site] = []
        for (contig, start), idx in groups.items():
            alleles = [(variants[i].ref, variants[i].alt) for i in idx]
            sites.append(build_site(ref.fetch, contig, start, alleles, self.window, ref.lengths[contig]))
        deltas, embeds = exact_deltas(self.model, sites, self.batch_size, chunk_size=self.chunk_tokens, embed=True)
        if self.rc:
            back, back_embeds = rc_deltas(self.model, sites, self.batch_size, chunk_size=self.chunk_tokens, embed=True)
            deltas = [0.5 * (f + r) for f, r in zip(deltas, back)]
            embeds = [0.5 * (f + r) for f, r in zip(embeds, back_embeds)]
        denom = self.window - 1
        out: list[dict] = [{} for _ in variants]
        for site, idx, d, e in zip(sites, groups.values(), deltas, embeds):
            for i, val, emb in zip(idx, d, e):
                out[i] = {"delta_ll_sum": float(val), "delta_ll_mean": float(val) / denom, "delta_embed": float(emb),
                          "pad": site.pad}
        return out

    def _fast(self, variants: list[Variant], cache: TileCache | None = None) -> list[dict]:
        """``delta_fast`` and ``pad`` per SNV, per contig through ``fast_scores`` (tiles shared via ``cache``)."""
        ref = self._ref()
        by_contig: dict[str, list[int]] = {}
        for i, v in enumerate(variants):
            by_contig.setdefault(v.contig or ref.resolve(v.chrom), []).append(i)
        out: list[dict] = [{} for _ in variants]
        for contig, idx in by_contig.items():
            size = ref.lengths[contig]
            group = [variants[i] for i in idx]
            starts = np.fromiter((v.start for v in group), dtype=np.int64, count=len(group))
            scores = fast_scores(
                self.model,
                ref.fetch,
                contig,
                size,
                starts,
                base_index(v.ref for v in group),
                base_index(v.alt for v in group),
                self.window,
                self.rc,
                self.fast_batch_size,
                cache,
                self.chunk_tokens,
            )
            pads = tile_pads(starts, self.window, size)
            for i, val, pad in zip(idx, scores.tolist(), pads.tolist()):
                out[i] = {"delta_fast": val, "pad": pad}
        return out

    # -- embeddings --------------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, variants: Any, layers: Sequence[str], radius: int = 64) -> dict[str, np.ndarray]:
        """Mean-pooled hidden states around each variant for its ref and alt window.

        Returns ``ref``/``alt`` (n, hidden * len(layers)) with layers concatenated in order, the same per
        layer under ``ref/<layer>``/``alt/<layer>``, and ``status`` (n,); skipped rows are NaN.
        Pooling covers window positions [off - radius, off + radius] (off = window // 2, the variant).
        """
        layers = list(layers)
        if not layers:
            raise ConfigError("embed needs at least one layer name, e.g. ['blocks.3']")
        ref = self._ref()
        items = list(self.variants(variants))
        off = self.window // 2
        lo, hi = max(0, off - radius), min(self.window, off + radius + 1)
        ok = [i for i, v in enumerate(items) if isinstance(v, Variant) and not self._unscorable(v, "exact")]
        # One reference window per site (shared by all its alleles); only tokens [0, hi) are run: the model
        # is causal, so hidden states at the pooled positions do not depend on anything after them.
        ref_rows: dict[tuple[str, int], int] = {}
        ref_tokens, alt_tokens, ref_of = [], [], []
        for i in ok:
            v = items[i]
            contig = v.contig or ref.resolve(v.chrom)
            site = build_site(ref.fetch, contig, v.start, [(v.ref, v.alt)], self.window, ref.lengths[contig])
            key = (contig, v.start)
            if key not in ref_rows:
                ref_rows[key] = len(ref_tokens)
                ref_tokens.append(site.ref_tokens[:hi])
            ref_of.append(ref_rows[key])
            alt_tokens.append(site.alt_tokens[0][:hi])

        def pool(rows: list[np.ndarray]) -> dict[str, np.ndarray]:
            parts: dict[str, list[np.ndarray]] = {name: [] for name in layers}
            for b0 in range(0, len(rows), self.batch_size):
                batch = torch.from_numpy(np.stack(rows[b0 : b0 + self.batch_size])).to(self.model.device)
                hidden = self.model(batch, return_hidden=layers).hidden
                for name in layers:
                    parts[name].append(hidden[name][:, lo:hi].float().mean(1).cpu().numpy())
            return {name: np.concatenate(p) if p else np.zeros((0, 0), np.float32) for name, p in parts.items()}

        ref_pooled, alt_pooled = pool(ref_tokens), pool(alt_tokens)
        pooled = {f"ref/{name}": [ref_pooled[name][ref_of]] if ok else [] for name in layers}
        pooled.update({f"alt/{name}": [alt_pooled[name]] if ok else [] for name in layers})
        n = len(items)
        out: dict[str, np.ndarray] = {}
        for key, parts in pooled.items():
            width = parts[0].shape[1] if parts else self.model.config.hidden_size
            arr = np.full((n, width), np.nan, dtype=np.float32)
            if parts:
                arr[ok] = np.concatenate(parts)
            out[key] = arr
        for k in ("ref", "alt"):
            out[k] = np.concatenate([out[f"{k}/{name}"] for name in layers], axis=1)
        status = np.array(["skipped"] * n, dtype=object)
        status[ok] = "ok"
        out["status"] = status
        return out
