"""`genomod --version`, `info` (versions, kernels, shipped models, model card) and `demo`."""

from __future__ import annotations

import json

from genomod import __version__
from genomod.cli.main import main


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("score", "eval", "train", "convert", "info", "mutagenesis"):
        assert cmd in out


def test_info_json_lists_versions_kernels_and_default_model(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["genomod"] == __version__
    assert "default" in data["shipped_models"]
    assert data["attention_backend"] in ("sdpa", "flash-attn")
    assert "hyena_SE" in data["kernels"]


def test_info_model_card_and_unknown_model(capsys):
    assert main(["info", "--model", "default"]) == 0
    assert "model card" in capsys.readouterr().out
    assert main(["info", "--model", "no-such-model"]) == 2
    assert "not found" in capsys.readouterr().err


def test_demo_reads_the_shipped_region(capsys):
    assert main(["demo", "--position", "41245466", "--window", "20"]) == 0
    out = capsys.readouterr().out
    assert "chr17:41245456-41245475" in out and "BRCA1 SNVs shipped: 3893" in out
