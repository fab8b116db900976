"""Input/output: reference FASTA access, VCF variants, BED intervals, contig aliases and windows."""

from genomod.io.bed import Interval, IntervalIndex, parse_region, read_bed
from genomod.io.contigs import ContigMap, aliases, canonical_key, parse_region_name, same_contig
from genomod.io.fasta import ReferenceGenome, default_cache_dir, detect_compression
from genomod.io.vcf import (
    AlleleChecker,
    BuildCheck,
    SkippedVariant,
    Variant,
    VcfReader,
    read_variants,
    split_variants,
    variant_kind,
    variants_from_tuples,
)
from genomod.io.windows import FetchFn, Window, centered_bounds, window_starts

__all__ = [
    "AlleleChecker",
    "BuildCheck",
    "ContigMap",
    "FetchFn",
    "Interval",
    "IntervalIndex",
    "ReferenceGenome",
    "SkippedVariant",
    "Variant",
    "VcfReader",
    "Window",
    "aliases",
    "canonical_key",
    "centered_bounds",
    "default_cache_dir",
    "detect_compression",
    "parse_region",
    "parse_region_name",
    "read_bed",
    "read_variants",
    "same_contig",
    "split_variants",
    "variant_kind",
    "variants_from_tuples",
    "window_starts",
]
