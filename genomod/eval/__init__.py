"""Evaluation: metrics with bootstrap CIs, baselines, reports and plots, the BRCA1 benchmark, label-free probes."""

from genomod.eval.baselines import CONSEQUENCE_RANK, baseline_specs, baseline_table, with_baselines
from genomod.eval.metrics import (
    TASKS,
    ScoreSpec,
    auprc,
    auroc,
    binary_labels,
    bootstrap_ci,
    evaluate,
    score_metrics,
    spearman,
    task_labels,
)

__all__ = [
    "CONSEQUENCE_RANK", "TASKS", "ScoreSpec", "auprc", "auroc", "baseline_specs", "baseline_table",
    "binary_labels", "bootstrap_ci", "evaluate", "run_probes", "run_report", "score_metrics", "spearman",
    "task_labels", "with_baselines",
]


def __getattr__(name: str):
    """Lazy access to run_report (imports matplotlib) and run_probes (imports torch) only when needed."""
    if name == "run_report":
        from genomod.eval.report import run_report

        return run_report
    if name == "run_probes":
        from genomod.eval.probes import run_probes

        return run_probes
    raise AttributeError(f"module 'genomod.eval' has no attribute {name!r}")
