"""Annotated VCF output: per-ALT ``GENOMOD_*`` INFO fields (Number=A) added to every input record.

Records are copied unchanged except for the added INFO fields. Alleles that could not be scored carry
``GENOMOD_STATUS=skipped`` and a ``GENOMOD_REASON`` (spaces and separators replaced by ``_``); a record
without any ALT allele gets the record-level ``GENOMOD_NOTE``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pysam

from genomod import __version__
from genomod.errors import ConfigError

PREFIX = "GENOMOD_"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:>+-]+")

# column -> (INFO id, Number, Type, description)
FIELDS = {
    "delta_ll_mean": (
        "DLL_MEAN",
        "A",
        "Float",
        "Delta log-likelihood LL(alt)-LL(ref), per-nucleotide mean "
        "over the window (Evo 2 convention; negative = more damaging)",
    ),
    "delta_ll_sum": ("DLL_SUM", "A", "Float", "Delta log-likelihood LL(alt)-LL(ref), summed over the window"),
    "delta_embed": (
        "EMBED",
        "A",
        "Float",
        "Embedding distance: minus the mean L2 distance between the ALT and REF windows' last-block hidden states "
        "at the positions after the variant (0 = no change, negative = more damaging; SNVs only)",
    ),
    "delta_fast": (
        "FAST",
        "A",
        "Float",
        "Fast SNV score log p(alt)-log p(ref) at the site from one forward "
        "(approximation of the delta log-likelihood)",
    ),
    "delta_ll_mean_cal": (
        "DLL_MEAN_CAL",
        "A",
        "Float",
        "Calibrated GENOMOD_DLL_MEAN: raw minus the model's mean at background sites with the same 5-base "
        "reference context (pos-2..pos+2, forward strand) and ALT, from the model's calibration table "
        "(missing for non-SNVs and contexts with N)",
    ),
    "delta_ll_sum_cal": (
        "DLL_SUM_CAL",
        "A",
        "Float",
        "Calibrated GENOMOD_DLL_SUM: raw minus the model's mean at background sites with the same 5-base "
        "reference context (pos-2..pos+2, forward strand) and ALT, from the model's calibration table "
        "(missing for non-SNVs and contexts with N)",
    ),
    "delta_fast_cal": (
        "FAST_CAL",
        "A",
        "Float",
        "Calibrated GENOMOD_FAST: raw minus the model's mean at background sites with the same 5-base "
        "reference context (pos-2..pos+2, forward strand) and ALT, from the model's calibration table "
        "(missing for contexts with N)",
    ),
    "delta_embed_cal": (
        "EMBED_CAL",
        "A",
        "Float",
        "Calibrated GENOMOD_EMBED: raw minus the model's mean at background sites with the same 5-base "
        "reference context (pos-2..pos+2, forward strand) and ALT, from the model's calibration table "
        "(missing for non-SNVs and contexts with N)",
    ),
    "head": ("HEAD", "A", "Float", "P(damaging) from the supervised head given with --head"),
    "ft": (
        "FT",
        "A",
        "Float",
        "Fine-tuned variant model (genomod finetune, variant-effect task): P(positive class) for a label "
        "task, the predicted score for a score task",
    ),
    "pad": (
        "PAD",
        "A",
        "Integer",
        "Number of N bases added where the scoring window runs past a contig edge",
    ),
    "status": ("STATUS", "A", "String", "ok or skipped (see GENOMOD_REASON)"),
    "reason": ("REASON", "A", "String", "Why an allele was not scored (. when scored)"),
}


def sanitize(text: str | None) -> str:
    """A value that is legal inside a VCF INFO string (no spaces, ';', '=', ',')."""
    if not text:
        return "."
    return _UNSAFE.sub("_", text).strip("_") or "."


def add_header(
    header: pysam.VariantHeader,
    columns: Sequence[str],
    model: str,
    mode: str,
    window: int,
    rc: bool,
    calibration: object | None = None,
) -> None:
    """Declare the GENOMOD_ INFO fields used for ``columns`` and a ``##genomod_score`` settings line
    (plus ``##genomod_calibration`` naming the background table when ``calibration`` is given)."""
    settings = f"model={model}; genomod {__version__}; mode={mode}; window={window}; rc={rc}"
    for col in (*columns, "pad", "status", "reason"):
        key, number, typ, desc = FIELDS[col]
        if PREFIX + key not in header.info:
            header.info.add(PREFIX + key, number, typ, f"{desc} [{settings}]")
    if PREFIX + "NOTE" not in header.info:
        header.info.add(
            PREFIX + "NOTE", "1", "String", "Record-level reason when the record has no ALT to score"
        )
    header.add_line(
        f'##genomod_score=<Model="{sanitize(model)}",Version="{__version__}",Mode="{mode}",'
        f"Window={window},RC={str(rc).lower()}>"
    )
    if calibration is not None:
        info = calibration.summary()
        where = re.sub(r'["<>\s]+', "_", str(info["file"] or "in-memory"))
        header.add_line(
            f'##genomod_calibration=<File="{where}",Sites={info["n_sites"]},'
            f'Window={info["window"]},MinCount={info["min_count"]},'
            f'Weights_sha256="{info["weights_sha256"] or "."}">'
        )


def _value(col: str, row: dict | None) -> object:
    if row is None:
        return None
    val = row.get(col)
    if col == "reason":
        return sanitize(val) if val else "."
    if col == "status":
        return val or "skipped"
    if col == "pad":
        return int(val) if val is not None else None
    if val is None or (isinstance(val, float) and math.isnan(val)):
        return None
    return float(val)


def annotate(record: pysam.VariantRecord, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Set the per-ALT INFO fields of ``record`` from its score rows (matched by allele_index)."""
    n = len(record.alts or ())
    if n == 0:
        reason = next((r.get("reason") for r in rows if r.get("reason")), "no ALT allele")
        record.info[PREFIX + "NOTE"] = sanitize(reason)
        return
    by_allele = {int(r["allele_index"]): r for r in rows if r.get("allele_index")}
    for col in (*columns, "pad", "status", "reason"):
        vals = [_value(col, by_allele.get(i)) for i in range(1, n + 1)]
        if col == "status":
            vals = [v if v is not None else "skipped" for v in vals]
        if col == "reason":
            vals = [v if v is not None else "not_scored" for v in vals]
        if all(v is None for v in vals):
            continue
        record.info[PREFIX + FIELDS[col][0]] = tuple(vals)


def vcf_write_mode(path: str | os.PathLike) -> str:
    """'wz' (bgzip) for .vcf.gz/.vcf.bgz output, 'w' (plain text) otherwise; BCF output is refused."""
    name = str(path).lower()
    if name.endswith(".bcf"):
        raise ConfigError(f"{path}: BCF output is not supported; write .vcf or .vcf.gz")
    return "wz" if name.endswith((".gz", ".bgz")) else "w"


class VcfTextWriter:
    """Writes the header text then ``str(record)`` lines, plain or bgzipped (by the final name's suffix).

    Records are written as text because htslib may add header entries while reading (e.g. for symbolic
    alleles), which breaks pysam's binary writer when its header copy no longer matches.
    """

    def __init__(self, path: str | os.PathLike, header: str, bgzip: bool | None = None) -> None:
        self.path = Path(path)
        gz = vcf_write_mode(path) == "wz" if bgzip is None else bgzip
        self._fh = pysam.BGZFile(str(self.path), "wb") if gz else open(self.path, "wb")  # noqa: SIM115
        self._fh.write(header.encode())

    def write(self, record: pysam.VariantRecord) -> None:
        """Append one record."""
        line = str(record)
        self._fh.write((line if line.endswith("\n") else line + "\n").encode())

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> VcfTextWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def index_vcf(path: Path) -> Path | None:
    """tabix-index a bgzipped VCF (index path, or None when it cannot be indexed, e.g. unsorted)."""
    try:
        return Path(pysam.tabix_index(str(path), preset="vcf", force=True, keep_original=True))
    except (OSError, ValueError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(path) + ".tbi")
        return None
