"""The hybrid long-context model: config, blocks (Hyena-SE/MR/LI, MHA) and the stacked model."""

from genomod.model.config import PRESETS, ModelConfig, expand_pattern
from genomod.model.counting import count_parameters, flops_per_token
from genomod.model.grow import grow_depth
from genomod.model.hybrid import HybridModel, InferenceCache, ModelOutput, build_model

__all__ = [
    "PRESETS", "ModelConfig", "HybridModel", "InferenceCache", "ModelOutput", "build_model",
    "count_parameters", "expand_pattern", "flops_per_token", "grow_depth",
]
