"""Zero-shot variant-effect scoring (exact delta log-likelihood with prefix reuse, fast SNV scores) and
embeddings of long regions (``embed``: chunked inference streamed to .h5/.npz)."""

from genomod.scoring.calibration import CalibrationTable, build_calibration_table, load_calibration
from genomod.scoring.embed import embed_regions, embed_sequence
from genomod.scoring.scorer import MODES, VariantScorer

__all__ = ["MODES", "CalibrationTable", "VariantScorer", "build_calibration_table", "embed_regions", "embed_sequence",
           "load_calibration"]
