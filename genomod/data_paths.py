"""Paths of the data shipped inside the package (never ../shared at run time): the one place they are spelled."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_dir() -> Path:
    """Root of genomod's shipped data."""
    return Path(str(resources.files("genomod") / "data"))


def brca1_table() -> Path:
    """Findlay et al. 2018 BRCA1 SGE table (3,893 SNVs, hg19), tidy TSV."""
    return data_dir() / "brca1" / "findlay2018_brca1_snvs.tsv"


def brca1_reference(build: str = "hg19") -> Path:
    """Full-coordinate chr17 FASTA (bgzip + faidx), N outside the BRCA1 region, for ``build`` hg19 or hg38."""
    return data_dir() / "reference" / f"{build}_chr17_brca1.fa.gz"


def probes_dir() -> Path:
    """Folder of the label-free probe inputs (orfs.fa.gz, splice.fa.gz, heldout.fa.gz, markov_counts.npz)."""
    return data_dir() / "probes"


def models_dir() -> Path:
    """Folder of the shipped model checkpoints (one folder per model)."""
    return data_dir() / "models"


def evo2_configs_dir() -> Path:
    """Folder of the published Evo 2 YAML configs (ArcInstitute/evo2 commit 53f1959)."""
    return data_dir() / "evo2_configs"


def presets_dir() -> Path:
    """Folder of the model presets read by ``ModelConfig.preset`` (genomod JSONs, the Evo 2 YAML index)."""
    return data_dir() / "presets"
