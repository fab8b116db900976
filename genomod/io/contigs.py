"""Contig-name aliases: ``chr17`` = ``17`` = ``NC_000017.10`` (GRCh37/hg19) = ``NC_000017.11`` (GRCh38/hg38).

A :class:`ContigMap` is built from the names actually present in a FASTA and resolves any alias to one of them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from genomod.errors import InputError

# RefSeq chromosome accessions, GRCh37 (hg19) versions; GRCh38 (hg38) is each version + 1 (MT is the same).
_GRCH37_VERSIONS = {
    "1": 10, "2": 11, "3": 11, "4": 11, "5": 9, "6": 11, "7": 13, "8": 10, "9": 11, "10": 10, "11": 9,
    "12": 11, "13": 10, "14": 8, "15": 9, "16": 9, "17": 10, "18": 9, "19": 9, "20": 10, "21": 8, "22": 10,
    "X": 10, "Y": 9,
}  # fmt: skip
CHROMOSOMES: tuple[str, ...] = tuple([str(i) for i in range(1, 23)] + ["X", "Y", "MT"])
MT_ACCESSION = "NC_012920.1"

_REGION_RE = re.compile(r"^(?P<contig>[^:\s]+):(?P<start>[0-9][0-9,]*)-(?P<end>[0-9][0-9,]*)$")


def _accession_number(key: str) -> int:
    return {"X": 23, "Y": 24}.get(key) or int(key)


def _build_alias_table() -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    to_key: dict[str, str] = {}
    aliases: dict[str, tuple[str, ...]] = {}
    for key in CHROMOSOMES:
        if key == "MT":
            names = ["chrM", "MT", "M", "chrMT", MT_ACCESSION, "NC_012920", "NC_001807.4"]
        else:
            acc = f"NC_{_accession_number(key):06d}"
            v37 = _GRCH37_VERSIONS[key]
            names = [f"chr{key}", key, f"{acc}.{v37}", f"{acc}.{v37 + 1}", acc]
        aliases[key] = tuple(names)
        for name in names:
            to_key[name.lower()] = key
    return to_key, aliases


_TO_KEY, _ALIASES = _build_alias_table()


def canonical_key(name: str) -> str | None:
    """Canonical chromosome key ('1'..'22', 'X', 'Y', 'MT') of any known alias, else None."""
    return _TO_KEY.get(name.strip().lower())


def aliases(name: str) -> tuple[str, ...]:
    """All known aliases of a contig name (the name itself first); unknown names alias only themselves."""
    key = canonical_key(name)
    if key is None:
        return (name,)
    return (name,) + tuple(a for a in _ALIASES[key] if a != name)


def parse_region_name(name: str) -> tuple[str, int, int] | None:
    """Parse a record name like ``chr17:40577018-41677368`` (1-based inclusive) -> (contig, start0, end0)."""
    match = _REGION_RE.match(name.strip())
    if match is None:
        return None
    start = int(match["start"].replace(",", ""))
    end = int(match["end"].replace(",", ""))
    if start < 1 or end < start:
        return None
    return match["contig"], start - 1, end


def same_contig(a: str, b: str) -> bool:
    """True when two names denote the same chromosome (exact match or shared alias key)."""
    if a == b:
        return True
    ka, kb = canonical_key(a), canonical_key(b)
    return ka is not None and ka == kb


class ContigMap:
    """Resolves user-facing contig names (any alias) to the names present in one FASTA/VCF/BED file."""

    def __init__(self, names: Iterable[str], source: str = "<reference>") -> None:
        self.names: tuple[str, ...] = tuple(names)
        self.source = str(source)
        self._exact = set(self.names)
        self._by_key: dict[str, str] = {}
        for name in self.names:
            key = canonical_key(name)
            if key is not None and key not in self._by_key:
                self._by_key[key] = name

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get(self, name: str) -> str | None:
        """The name present in the file for ``name`` (any alias), or None."""
        if name in self._exact:
            return name
        key = canonical_key(name)
        if key is not None:
            return self._by_key.get(key)
        return None

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """Closest known names to ``name`` (difflib), for error messages."""
        return difflib.get_close_matches(name, self.names, n=n, cutoff=0.5)

    def resolve(self, name: str) -> str:
        """Name present in the file for ``name``; unknown -> InputError naming the file and close matches."""
        found = self.get(name)
        if found is not None:
            return found
        raise InputError(unknown_contig_message(name, self.source, self.names, self.suggest(name)))


def unknown_contig_message(name: str, source: str, names: tuple[str, ...], close: list[str]) -> str:
    """One-line message for an unknown contig, with the closest known names."""
    if close:
        hint = "did you mean " + ", ".join(repr(c) for c in close) + "?"
    elif names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        hint = f"known contigs: {shown}"
    else:
        hint = "the file has no contigs"
    return f"{source}: unknown contig {name!r} ({len(names)} contigs in file); {hint}"
