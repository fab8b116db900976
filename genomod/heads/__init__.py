"""Supervised heads on variant embeddings: logistic regression and a small MLP, grouped CV, safe save/load."""

from genomod.heads.apply import head_column
from genomod.heads.base import (
    HEAD_KINDS,
    FeatureSpec,
    Head,
    build_features,
    load_head,
    new_head,
    register_head,
)
from genomod.heads.cv import (
    HeadCV,
    cross_validate,
    fit_heads_on_embeddings,
    genomic_blocks,
    grouped_folds,
    nested_layer_sweep,
)
from genomod.heads.logistic import LogisticHead
from genomod.heads.mlp import MLPHead

__all__ = [
    "HEAD_KINDS", "FeatureSpec", "Head", "HeadCV", "LogisticHead", "MLPHead", "build_features", "cross_validate",
    "fit_heads_on_embeddings", "genomic_blocks", "grouped_folds", "head_column", "load_head",
    "nested_layer_sweep", "new_head", "register_head",
]
