"""Zero-shot variant-effect scoring: exact delta log-likelihood (prefix reuse) and fast SNV scores."""

from genomod.scoring.calibration import CalibrationTable, build_calibration_table, load_calibration
from genomod.scoring.scorer import MODES, VariantScorer

__all__ = ["MODES", "CalibrationTable", "VariantScorer", "build_calibration_table", "load_calibration"]
