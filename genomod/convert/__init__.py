"""Converters from other models' checkpoints into genomod checkpoints (Evo 2: ``genomod.convert.evo2``)."""

from __future__ import annotations

from genomod.convert.evo2 import EVO2_CONFIGS, convert_evo2, evo2_model_config, evo2_sequence_scores

__all__ = ["EVO2_CONFIGS", "convert_evo2", "evo2_model_config", "evo2_sequence_scores"]
