"""Indexed random access to FASTA files (plain, gzip, bgzip) through pysam/htslib.

Plain gzip cannot be indexed by htslib: such files are decompressed and re-compressed with bgzip into the
cache folder (``$GENOMOD_CACHE``, else ``~/.cache/genomod``) once, and reused while the source is unchanged.
When the FASTA's folder is read-only the ``.fai``/``.gzi`` index goes into the cache folder instead.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import logging
import os
import re
import stat
import zlib
from pathlib import Path

import pysam

from genomod.errors import InputError
from genomod.io.contigs import ContigMap
from genomod.io.windows import Window
from genomod.utils import atomic_path, capture_stderr_fd, check_readable, open_decompressed

logger = logging.getLogger(__name__)

_SNIFF_BYTES = 1 << 16
_COPY_CHUNK = 1 << 22
_DUP_RE = re.compile(r'Ignoring duplicate sequence "([^"]*)"')
_NOT_A_BASE = re.compile(r"[^A-Za-z]")  # letters only: IUPAC/other letters become N in the tokenizer


def _line_at(path: Path, offset: int) -> int:
    """1-based line number of the byte at decompressed ``offset`` (error paths only: reads up to it)."""
    lines, done = 1, 0
    with open_decompressed(path) as fh:  # .fai offsets count decompressed bytes
        while done < offset:
            chunk = fh.read(min(_COPY_CHUNK, offset - done))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            done += len(chunk)
    return lines


_LETTERS_EOL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\r\n"


def _validate_sequence_lines(path: Path, shown: Path) -> list[tuple[int, str]]:
    """One pass over a FASTA being indexed: every sequence line holds letters only (htslib counts digits and
    spaces as bases and misplaces later lines). Chunks without a header are checked with one ``translate``.

    Returns ``(header line, name)`` of records without any sequence (htslib leaves them out of the index).
    """
    lineno, contig, carry = 0, None, b""
    header_line, has_seq, empty = 0, True, []
    with open_decompressed(path) as fh:
        while True:
            chunk = fh.read(_COPY_CHUNK)
            data = carry + chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
                if not data:
                    continue  # one line longer than a chunk (unwrapped sequence): keep reading
            else:
                carry = b""
                if not data:
                    break
            if b">" not in data and not data.translate(None, _LETTERS_EOL):
                lineno += data.count(b"\n")
                has_seq = has_seq or bool(data.strip())
                continue
            for line in data.split(b"\n")[: data.count(b"\n") + (0 if chunk else 1)]:
                lineno += 1
                if line.startswith(b">"):
                    if not has_seq:
                        empty.append((header_line, contig))
                    contig = line[1:].split(maxsplit=1)[0].decode("utf-8", "replace") if line[1:].strip() else ""
                    header_line, has_seq = lineno, False
                    continue
                bad = line.translate(None, _LETTERS_EOL)
                if bad:
                    char = chr(bad[0])
                    where = f" in the sequence of {contig}" if contig else " before any '>' header"
                    raise InputError(f"{shown}: line {lineno}: invalid character {char!r}{where}; "
                                     "a FASTA sequence holds only letters")
                has_seq = has_seq or bool(line.strip())
            if not chunk:
                break
    if not has_seq:
        empty.append((header_line, contig))
    return empty


def _read_fai(fai: Path) -> dict[str, tuple[int, int, int, int]]:
    """Parse a .fai: name -> (length, offset, line bases, line bytes); InputError naming the line when broken."""
    entries: dict[str, tuple[int, int, int, int]] = {}
    fix = "delete it to rebuild the index (or run `samtools faidx`)"
    try:
        text = fai.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{fai}: FASTA index is not text; {fix}") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) < 5:
            raise InputError(f"{fai}: line {lineno}: expected 5 tab-separated columns "
                             f"(name length offset linebases linewidth); {fix}")
        try:
            length, offset, bases, width = (int(x) for x in fields[1:5])
        except ValueError:
            raise InputError(f"{fai}: line {lineno}: non-numeric column in {line[:60]!r}; {fix}") from None
        if min(length, offset, bases, width) < 0 or bases > width or (length and not bases):
            raise InputError(f"{fai}: line {lineno}: impossible values in {line[:60]!r}; {fix}")
        entries[fields[0]] = (length, offset, bases, width)
    return entries


def _check_fai(fasta: Path, fai: Path) -> None:
    """Check an existing index against a plain FASTA: every record's offset follows its '>name' header, lines
    have the indexed width, and nothing points past the end of the file (a stale or foreign .fai)."""
    fix = "the index is stale or belongs to another file; delete it to rebuild it"
    size = fasta.stat().st_size
    with open(fasta, "rb") as fh:
        for lineno, (name, (length, offset, bases, width)) in enumerate(_read_fai(fai).items(), start=1):
            span = (length // bases) * width + length % bases if bases else 0
            if offset + span > size:
                raise InputError(f"{fai}: line {lineno}: {name} ends at byte {offset + span}, beyond the end of "
                                 f"{fasta.name} ({size} bytes); {fix}")
            lo = max(0, offset - 4096)
            fh.seek(lo)
            before = fh.read(offset - lo)
            header = before.rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
            words = header[1:].split()
            if not before.endswith(b"\n") or not header.startswith(b">") or not words or words[0] != name.encode():
                raise InputError(f"{fai}: line {lineno}: {name} at byte {offset} does not follow a '>{name}' "
                                 f"header in {fasta.name}; {fix}")
            if length > bases:
                first = fh.read(width)
                if len(first) != width or first[bases:].strip(b"\r\n") or b"\n" not in first[bases:]:
                    raise InputError(f"{fai}: line {lineno}: {name} lines are not {bases} bases wide in "
                                     f"{fasta.name}; {fix}")


def default_cache_dir() -> Path:
    """Cache folder: ``$GENOMOD_CACHE``, else ``$XDG_CACHE_HOME/genomod``, else ``~/.cache/genomod``."""
    env = os.environ.get("GENOMOD_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "genomod"


def detect_compression(path: str | os.PathLike) -> str:
    """'bgzip', 'gzip' (plain, not indexable) or 'plain', from the file's first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return "plain"
    # BGZF: FEXTRA flag set and a 'BC' extra subfield right after the 12-byte gzip header.
    if len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC":
        return "bgzip"
    return "gzip"


def _dir_writable(folder: Path) -> bool:
    """True when ``folder`` may be written: it has write permission bits and we can create files in it."""
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return False  # marked read-only: respect it even when running as root
    return os.access(folder, os.W_OK | os.X_OK)


def _check_readable(path: Path, kind: str = "FASTA") -> None:
    check_readable(path, kind)


def _source_key(path: Path) -> str:
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(ident.encode()).hexdigest()[:16]


def _remove_index(fasta: Path) -> None:
    """Delete a half-built ``.fai``/``.gzi`` of ``fasta`` (so the next open rebuilds it)."""
    for p in (Path(str(fasta) + ".fai"), Path(str(fasta) + ".gzi")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _sniff_fasta(path: Path) -> None:
    """Raise InputError unless the (decompressed) file starts with a '>' header line."""
    try:
        with open_decompressed(path) as fh:
            head = fh.read(_SNIFF_BYTES)
    except EOFError:
        raise InputError(f"{path}: truncated gzip file (unexpected end of data)") from None
    except (OSError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt gzip file ({exc})") from None
    text = head.lstrip()
    if not text:
        raise InputError(f"{path}: FASTA file is empty (no records)")
    if not text.startswith(b">") or b"\x00" in head:
        first = text.split(b"\n", 1)[0][:40].decode("ascii", "replace")
        raise InputError(f"{path}: not a FASTA file (first line {first!r} does not start with '>')")


def _gzip_to_bgzip(src: Path, dest: Path) -> None:
    """Stream-decompress a plain gzip file and write it bgzip-compressed to ``dest`` (atomically)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(dest) as tmp:
            out = pysam.BGZFile(str(tmp), "wb")
            try:
                with gzip.open(src, "rb") as fh:
                    while chunk := fh.read(_COPY_CHUNK):
                        out.write(chunk)
            finally:
                out.close()
    except EOFError:
        raise InputError(f"{src}: truncated gzip file (unexpected end of data)") from None
    except (OSError, zlib.error) as exc:
        raise InputError(f"{src}: corrupt gzip file ({exc})") from None


class ReferenceGenome:
    """Random access to a reference FASTA (plain/gzip/bgzip), with alias-aware contig names.

    Coordinates are 0-based half-open; sequence case is kept (soft-masking), callers encode.
    """

    def __init__(self, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        _check_readable(self.path)
        self.compression = detect_compression(self.path)
        _sniff_fasta(self.path)
        self._fasta_path = self._bgzip_copy() if self.compression == "gzip" else self.path
        self._fasta_path = self._index_location(self._fasta_path)
        self._fa: pysam.FastaFile | None = None
        fa = self._open()
        self.contigs: tuple[str, ...] = tuple(fa.references)
        self.lengths: dict[str, int] = dict(zip(fa.references, fa.lengths))
        if not self.contigs:
            raise InputError(f"{self.path}: FASTA file has no records")
        if "" in self.lengths:
            offset = self._fai()[""][1]
            raise InputError(f"{self.path}: line {_line_at(self._fasta_path, max(0, offset - 2))}: empty contig "
                             "name (a '>' line without a name)")
        self.contig_map = ContigMap(self.contigs, source=str(self.path))

    # -- setup -------------------------------------------------------------------------------------------
    def _bgzip_copy(self) -> Path:
        name = self.path.name[:-3] if self.path.name.endswith(".gz") else self.path.name
        dest = self.cache_dir / "bgzip" / _source_key(self.path) / f"{name}.gz"
        if dest.exists():
            logger.info("%s: using bgzip copy %s", self.path, dest)
            return dest
        if not self._cache_writable():
            raise InputError(
                f"{self.path}: plain gzip cannot be indexed and cache folder {self.cache_dir} is not writable; "
                "recompress it with `bgzip` or set GENOMOD_CACHE to a writable folder"
            )
        logger.warning(
            "%s is plain gzip (htslib cannot index it): writing a bgzip copy to %s (once)", self.path, dest
        )
        _gzip_to_bgzip(self.path, dest)
        return dest

    def _cache_writable(self) -> bool:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return _dir_writable(self.cache_dir)

    def _index_location(self, fasta: Path) -> Path:
        """Path to open: ``fasta`` itself when its index exists or can be written beside it, else a cache link."""
        fai = Path(str(fasta) + ".fai")
        gzi = Path(str(fasta) + ".gzi")
        mtime = fasta.stat().st_mtime
        have = fai.exists() and fai.stat().st_mtime >= mtime
        if have and self.compression != "plain":
            have = gzi.exists() and gzi.stat().st_mtime >= mtime
        if have:
            return fasta
        if _dir_writable(fasta.parent):
            if fai.exists():
                logger.info("%s: index is older than the FASTA, rebuilding it", fasta)
                for p in (fai, gzi):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
            return fasta
        link = self.cache_dir / "index" / _source_key(fasta) / fasta.name
        if link.is_symlink() or link.exists():
            return link
        if not self._cache_writable():
            raise InputError(
                f"{self.path}: no index (.fai) and its folder {fasta.parent} is read-only, and cache folder "
                f"{self.cache_dir} is not writable; run `samtools faidx` where you can write, "
                "or set GENOMOD_CACHE to a writable folder"
            )
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            link.symlink_to(fasta.resolve())
        logger.info("%s: folder is read-only, index goes to %s", self.path, link.parent)
        return link

    def _open(self) -> pysam.FastaFile:
        if self._fa is not None:
            return self._fa
        fasta = self._fasta_path
        fai = Path(str(fasta) + ".fai")
        building = not fai.exists()
        if not building:
            if self.compression == "plain":
                _check_fai(fasta, fai)
            else:
                _read_fai(fai)
        with capture_stderr_fd() as captured:
            try:
                fa = pysam.FastaFile(str(fasta))
                error = None
            except (OSError, ValueError) as exc:
                fa, error = None, exc
        log = "".join(captured)
        if error is not None or (building and _DUP_RE.search(log)):
            if building:
                _remove_index(fasta)
            if fa is not None and _DUP_RE.search(log):
                fa.close()
            raise self._open_error(log, error)
        if log.strip():
            logger.debug("htslib: %s", log.strip())
        if building:
            try:
                for line, name in _validate_sequence_lines(fasta, self.path):
                    logger.warning("%s: line %d: record %r has no sequence; it is left out (htslib does not index "
                                   "empty records)", self.path, line, name)
            except InputError:
                fa.close()
                _remove_index(fasta)
                raise
        self._fa = fa
        return fa

    def _open_error(self, log: str, error: Exception | None) -> InputError:
        """The one-line error for a FASTA htslib could not open or index, from its stderr ``log``."""
        dup = _DUP_RE.search(log)
        if dup:
            return InputError(f"{self.path}: duplicate contig name {dup.group(1)!r} in FASTA")
        detail = " ".join(line.strip() for line in log.splitlines() if line.strip()) or str(error)
        if self.compression != "plain" and ("truncat" in detail.lower() or "EOF" in detail):
            return InputError(f"{self.path}: truncated or corrupt compressed FASTA ({detail[:200]})")
        return InputError(f"{self.path}: cannot index FASTA ({detail[:200]})")

    # -- API -----------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"ReferenceGenome({str(self.path)!r}, {len(self.contigs)} contigs)"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fa"] = None  # pysam handles cannot be pickled: reopen lazily (e.g. in DataLoader workers)
        return state

    def __enter__(self) -> ReferenceGenome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying file handle (reopened on next use)."""
        if self._fa is not None:
            self._fa.close()
            self._fa = None

    def clone(self) -> ReferenceGenome:
        """A copy sharing the index and contig map but not the file handle (pysam handles are not thread-safe:
        one clone per thread); its own handle is opened on first use."""
        other = copy.copy(self)
        other._fa = None
        return other

    def __contains__(self, contig: object) -> bool:
        return contig in self.contig_map

    def resolve(self, contig: str) -> str:
        """Name in this FASTA for ``contig`` (any alias); unknown -> InputError with suggestions."""
        return self.contig_map.resolve(contig)

    def length(self, contig: str) -> int:
        """Length of ``contig`` (any alias)."""
        return self.lengths[self.resolve(contig)]

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Sequence of ``contig`` in [start, end) (0-based half-open), case kept."""
        name = self.resolve(contig)
        size = self.lengths[name]
        if start < 0 or end < start or end > size:
            raise InputError(
                f"{self.path}: interval {name}:{start}-{end} (0-based) is outside the contig (length {size})"
            )
        if start == end:
            return ""
        try:
            seq = self._open().fetch(name, start, end)
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path}: cannot read {name}:{start}-{end} ({exc})") from None
        bad = _NOT_A_BASE.search(seq)
        if bad is not None:
            self._invalid_base(name, start + bad.start(), bad.group())
        if len(seq) != end - start:
            raise InputError(f"{self.path}: {name}:{start}-{end} returned {len(seq)} bases, expected {end - start}: "
                             "the FASTA or its index is damaged")
        return seq

    def _fai(self) -> dict[str, tuple[int, int, int, int]]:
        return _read_fai(Path(str(self._fasta_path) + ".fai"))

    def _invalid_base(self, name: str, pos0: int, char: str) -> None:
        """Raise the error for a non-letter in a sequence line, naming its line in the file."""
        length, offset, bases, width = self._fai()[name]
        byte = offset + (pos0 // bases) * width + pos0 % bases
        raise InputError(f"{self.path}: line {_line_at(self._fasta_path, byte)}: invalid character {char!r} in the "
                         f"sequence of {name} (position {pos0 + 1}); a FASTA sequence holds only letters")

    def window(self, contig: str, center: int, length: int) -> Window:
        """Window of ``length`` bases with base ``length // 2`` at 0-based ``center``, N-padded at edges."""
        name = self.resolve(contig)
        size = self.lengths[name]
        if length <= 0:
            raise InputError(f"{self.path}: window length must be positive, got {length}")
        if center < 0 or center >= size:
            raise InputError(
                f"{self.path}: position {center + 1} (1-based) is beyond the end of {name} (length {size})"
            )
        return Window.around(self.fetch, name, center, length, size)
