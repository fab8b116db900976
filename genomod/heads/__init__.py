"""Supervised heads on variant embeddings: logistic regression and a small MLP, grouped CV, safe save/load."""

from genomod.heads.base import FeatureSpec, Head, build_features, load_head, new_head
from genomod.heads.cv import (
    cross_validate,
    fit_heads_on_embeddings,
    genomic_blocks,
    grouped_folds,
    nested_layer_sweep,
)
from genomod.heads.logistic import LogisticHead
from genomod.heads.mlp import MLPHead

__all__ = [
    "FeatureSpec", "Head", "LogisticHead", "MLPHead", "build_features", "cross_validate",
    "fit_heads_on_embeddings", "genomic_blocks", "grouped_folds", "load_head", "nested_layer_sweep", "new_head",
]
