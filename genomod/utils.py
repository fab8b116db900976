"""Small shared helpers: input checks and opening, atomic output files and folders, htslib stderr capture, device selection.

Imported by the pure I/O modules (``genomod.io``), so torch is imported only inside ``resolve_device``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from genomod.errors import DeviceError, InputError, ModelError, check_terminated

if TYPE_CHECKING:
    import torch


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest (sha256, md5, ...) of a file, streamed: provenance of inputs and outputs."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only if the block succeeds.

    An interrupted or failed write never leaves a partial file under the final name.
    """
    final = Path(final)
    parent = writable_parent(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp" + suffix, dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp creates 0600; give the final file the usual umask-based mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        check_terminated()  # a SIGTERM whose exception was swallowed still stops the commit
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final`` (``.NAME.tmp``, a stale one removed first); when the
    block succeeds, replace ``final`` with it (its files fsynced first when ``fsync``), else remove it.

    A reader never finds a half-written folder under the final name (checkpoints, fine-tuned models).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if fsync:  # make the data durable before the rename publishes the folder
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        check_terminated()
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_format_json(path: Path, fmt: str, max_version: int, required: str, what: str) -> dict[str, Any]:
    """Parse a genomod JSON document of format ``fmt``; ModelError naming ``path`` when it is corrupt, of
    another kind (``what``, e.g. "checkpoint config"), lacks ``required``, or comes from a newer genomod."""
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: corrupt JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt or required not in doc:
        raise ModelError(f"{path}: not a genomod {what}")
    if int(doc.get("format_version", 0)) > max_version:
        raise ModelError(f"{path}: written by a newer genomod ({doc.get('genomod_version', 'unknown version')}, "
                         f"format {doc['format_version']}); upgrade genomod to load it")
    return doc


def check_readable(path: str | os.PathLike, kind: str, allow_empty: bool = False) -> Path:
    """Fail with a one-line InputError when an input file is missing, a folder, unreadable or empty."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {kind} file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a {kind} file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: {kind} file is not readable (permission denied)")
    if not allow_empty and path.stat().st_size == 0:
        raise InputError(f"{path}: {kind} file is empty")
    return path


def open_decompressed(path: str | os.PathLike) -> BinaryIO:
    """Binary handle on a file's content, gunzipped when it starts with the gzip magic (bgzip is gzip too)."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115


class StderrCapture:
    """Captures what C code (htslib) writes to file descriptor 2 during each ``with capture():`` block, into one
    temporary file reused from block to block (a new file per block cost ~30 us: per VCF record, a third of
    fast mode's input parsing). Each block yields a list that receives the block's text at exit."""

    def __init__(self) -> None:
        self._tmp: BinaryIO | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[list[str]]:
        out: list[str] = []
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield out
            return
        if self._tmp is None:
            self._tmp = tempfile.TemporaryFile()  # noqa: SIM115 - kept open across blocks, closed by close()
        os.dup2(self._tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            text = b""
            if os.fstat(self._tmp.fileno()).st_size:
                self._tmp.seek(0)
                text = self._tmp.read()
                self._tmp.seek(0)
                self._tmp.truncate()
            out.append(text.decode("utf-8", "replace"))

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None


@contextlib.contextmanager
def capture_stderr_fd() -> Iterator[list[str]]:
    """Capture what C code (htslib) writes to file descriptor 2 during the block (one string, appended at exit)."""
    capture = StderrCapture()
    try:
        with capture() as out:
            yield out
    finally:
        capture.close()


def writable_parent(path: Path) -> Path:
    """The folder ``path`` will be written in; InputError when it is missing or not writable."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{path}: output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{path}: output folder {parent} is not writable")
    return parent


def check_writable(path: str | os.PathLike) -> None:
    """Fail early (before any work) when an output path cannot be written."""
    path = Path(path)
    writable_parent(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file path")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """'auto'/None -> CUDA when present, else CPU; an unavailable explicit device is a clear error."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def cpu_name() -> str:
    """CPU model name from /proc/cpuinfo (else platform.processor()), for benchmark reports."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def progress_bar(*columns: Any, enabled: bool = True, remaining: bool = True) -> Any:
    """A rich ``Progress`` on stderr: ``columns`` (text or rich columns), then a bar, done/total, elapsed and
    (``remaining``) time left; shown only on a terminal and when ``enabled``, so logs and pipes stay clean."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    head = [TextColumn(c) if isinstance(c, str) else c for c in columns]
    tail = [TimeRemainingColumn()] if remaining else []
    return Progress(*head, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), *tail, console=console,
                    disable=not (enabled and console.is_terminal))


def write_json(path: str | os.PathLike, doc: Any, default: Any = str) -> Path:
    """Write ``doc`` as indented JSON (trailing newline) atomically, creating the parent folder; ``default``
    converts what json cannot (numpy scalars, paths: ``str`` unless given)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, default=default) + "\n")
    return path
