"""genomod: DNA foundation models on long sequences.

Public API: ``load_model``, ``VariantScorer``, ``Tokenizer``, ``ModelConfig``, ``HybridModel``, ``__version__``,
``apply_precision`` (bf16 / int8 for a model in memory), ``run_probes`` (label-free biology probes),
``build_calibration_table`` / ``load_calibration`` (calibrated scores), ``finetune`` / ``merge_adapters``
(fine-tuning, genomod.finetuning) and ``embed_regions`` / ``embed_sequence`` (hidden states of long sequences,
chunked).
Heavy submodules are imported lazily so that ``import genomod`` and ``genomod --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "genomod.checkpoint",
    "save_model": "genomod.checkpoint",
    "VariantScorer": "genomod.scoring",
    "Tokenizer": "genomod.tokenizer",
    "ModelConfig": "genomod.model",
    "HybridModel": "genomod.model",
    "GenomodError": "genomod.errors",
    "run_probes": "genomod.eval.probes",
    "build_calibration_table": "genomod.scoring.calibration",
    "load_calibration": "genomod.scoring.calibration",
    "apply_precision": "genomod.precision",
    "finetune": "genomod.finetuning",
    "merge_adapters": "genomod.finetuning",
    "embed_regions": "genomod.scoring.embed",
    "embed_sequence": "genomod.scoring.embed",
}

__all__ = [
    "__version__", "load_model", "save_model", "VariantScorer", "Tokenizer", "ModelConfig", "HybridModel",
    "GenomodError", "run_probes", "build_calibration_table", "load_calibration", "apply_precision", "finetune",
    "merge_adapters", "embed_regions", "embed_sequence",
]

if TYPE_CHECKING:  # pragma: no cover
    from genomod.checkpoint import load_model, save_model
    from genomod.errors import GenomodError
    from genomod.eval.probes import run_probes
    from genomod.finetuning import finetune, merge_adapters
    from genomod.model import HybridModel, ModelConfig
    from genomod.precision import apply_precision
    from genomod.scoring import VariantScorer
    from genomod.scoring.calibration import build_calibration_table, load_calibration
    from genomod.scoring.embed import embed_regions, embed_sequence
    from genomod.tokenizer import Tokenizer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'genomod' has no attribute {name!r}")
