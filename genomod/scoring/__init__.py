"""Zero-shot variant-effect scoring: exact delta log-likelihood (prefix reuse) and fast SNV scores."""

from genomod.scoring.scorer import MODES, VariantScorer

__all__ = ["MODES", "VariantScorer"]
