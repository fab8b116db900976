"""``genomod eval``: evaluate variant scores on a labelled table, run the BRCA1 benchmark or the label-free probes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from genomod.errors import ConfigError, InputError

KEYS = ("chrom", "pos", "ref", "alt")


def _print_summary(result: dict[str, Any], out: Path) -> None:
    """Echo the overall AUROC line (first score) and the overall table."""
    table = result["table"]
    overall = table[table["group"] == "overall"]
    if len(overall):
        first = overall.iloc[0]
        ci = ""
        if first["auroc_lo"] == first["auroc_lo"]:
            ci = f" [{first['auroc_lo']:.3f}, {first['auroc_hi']:.3f}]"
        click.echo(f"overall AUROC {first['score']}: {first['auroc']:.3f}{ci} (n={int(first['n_used'])}, "
                   f"{int(first['n_pos'])} positive)")
    from genomod.eval.report import metrics_markdown

    click.echo(metrics_markdown(table, "overall", "spearman" in table.columns))
    click.echo(f"wrote {', '.join(result['files'])} to {out}")


@click.group("eval")
def eval_group() -> None:
    """Evaluate zero-shot scores and baselines against labels (AUROC/AUPRC with bootstrap CIs)."""


@eval_group.command("table")
@click.option("--tsv", "tsv", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Tab-separated variant table with a label column (and chrom/pos/ref/alt to join --scores-tsv).")
@click.option("--label-column", required=True, help="Column holding the class of each variant, e.g. func_class.")
@click.option("--positive", multiple=True, required=True, help="Positive class value (repeatable), e.g. LOF.")
@click.option("--negative", multiple=True,
              help="Negative class value (repeatable); default: every other non-empty label. Rows in neither "
                   "set are left out of the task.")
@click.option("--score-column", "score_columns", multiple=True,
              help="Score column to evaluate (repeatable), higher = more damaging unless listed in --negate. "
                   "Default: the delta_* columns of --scores-tsv.")
@click.option("--negate", multiple=True,
              help="Score column where LOWER = more damaging (repeatable). delta_ll_mean, delta_ll_sum and "
                   "delta_fast are always negated.")
@click.option("--scores-tsv", type=click.Path(dir_okay=False, path_type=Path),
              help="Precomputed scores (e.g. from `genomod score`) joined on chrom/pos/ref/alt.")
@click.option("--continuous-column", help="Continuous column for Spearman and the scatter plot (optional).")
@click.option("--group-by", multiple=True, help="Column to break metrics down by (repeatable).")
@click.option("--n-boot", type=click.IntRange(0), default=1000, show_default=True,
              help="Bootstrap resamples for 95% CIs (0: no CIs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("eval_out"),
              show_default=True, help="Output folder (metrics.json, scores.tsv, report.md, PNG figures).")
def table_cmd(tsv: Path, label_column: str, positive: tuple[str, ...], negative: tuple[str, ...],
              score_columns: tuple[str, ...], negate: tuple[str, ...], scores_tsv: Path | None,
              continuous_column: str | None, group_by: tuple[str, ...], n_boot: int, seed: int, out: Path) -> None:
    """Evaluate score columns of any labelled variant table and write a report."""
    import pandas as pd

    from genomod.eval.brca1 import merge_scores, read_scores_tsv
    from genomod.eval.report import run_report

    df = _read_tsv(tsv)
    if scores_tsv is not None:
        pre = read_scores_tsv(scores_tsv)
        cols = list(score_columns) if score_columns else None
        if cols is not None:
            cols = [c for c in cols if c in pre.columns and c not in df.columns]
        df = merge_scores(df, pre, cols or None, source=str(scores_tsv))
        if not score_columns:
            score_columns = tuple(c for c in pre.columns if c.startswith("delta_"))
    if not score_columns:
        raise ConfigError("no score column: pass --score-column (repeatable) or --scores-tsv")
    missing = [c for c in score_columns if c not in df.columns]
    if missing:
        raise InputError(f"{tsv}: score column(s) {', '.join(missing)} not found")
    for col in (label_column, continuous_column, *group_by):
        if col is not None and col not in df.columns:
            raise InputError(f"{tsv}: column {col!r} not found (columns: {', '.join(map(str, df.columns))})")
    for col in score_columns:
        if not pd.api.types.is_numeric_dtype(df[col]):
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            if bad.any():
                raise InputError(f"{tsv}: score column {col!r} has non-numeric value {df[col][bad].iloc[0]!r}")
    result = run_report(df, list(score_columns), label_column, list(positive), out,
                        negative=list(negative) if negative else None, negate=negate,
                        continuous_column=continuous_column, group_columns=list(group_by), n_boot=n_boot,
                        seed=seed, title=f"genomod evaluation of {tsv.name}")
    _print_summary(result, out)


def _read_tsv(path: Path) -> Any:
    import pandas as pd

    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype={"chrom": str, "#chrom": str, "ref": str, "alt": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable TSV ({str(exc).splitlines()[0]})") from None
    df.columns = [c.lstrip("#").lower() if c.lstrip("#").lower() in KEYS else c for c in df.columns]
    if df.empty:
        raise InputError(f"{path}: no rows")
    return df


@eval_group.command("brca1")
@click.option("--model", default="default", show_default=True, help="Shipped model name or checkpoint folder.")
@click.option("--mode", type=click.Choice(["exact", "fast"]), default="fast", show_default=True,
              help="exact: delta log-likelihood of full windows and delta_embed (embedding distance); fast: one "
                   "ref pass per site (SNVs).")
@click.option("--window", type=click.IntRange(16), default=None,
              help="Context window (bp); default: the model's training context, at most 8192.")
@click.option("--rc/--no-rc", default=False, show_default=True, help="Average with the reverse-complement strand.")
@click.option("--task", type=click.Choice(["lof_vs_rest", "lof_vs_func"]), default="lof_vs_rest",
              show_default=True, help="lof_vs_rest: LOF vs FUNC+INT (Evo 2 convention); lof_vs_func drops INT.")
@click.option("--scores-tsv", type=click.Path(dir_okay=False, path_type=Path),
              help="Use precomputed scores (delta_* columns, joined on chrom/pos/ref/alt) instead of running the model.")
@click.option("--heads/--no-heads", default=False, show_default=True,
              help="Also fit supervised heads on embeddings with grouped (100 bp block) nested CV.")
@click.option("--head-kind", type=click.Choice(["logistic", "mlp"]), default="logistic", show_default=True,
              help="Head model for --heads.")
@click.option("--layers", multiple=True,
              help="Layer(s) for --heads (repeatable, e.g. blocks.12); default: 1/4, 1/2, 3/4 of the depth.")
@click.option("--n-splits", type=click.IntRange(2), default=5, show_default=True,
              help="Outer grouped CV folds for --heads (inner layer selection uses 3).")
@click.option("--block-size", type=click.IntRange(1), default=100, show_default=True,
              help="Genomic block (bp) for grouping variants in CV: a block is never split across folds.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Windows per batch.")
@click.option("--n-boot", type=click.IntRange(0), default=1000, show_default=True,
              help="Bootstrap resamples for 95% CIs (0: no CIs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for bootstrap and CV folds.")
@click.option("--table", "table", type=click.Path(dir_okay=False, path_type=Path),
              help="BRCA1 table to use instead of the shipped one (same columns).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("brca1_eval"),
              show_default=True, help="Output folder.")
@click.option("--calibrate", is_flag=True,
              help="Also report background-calibrated scores (-delta_*_cal) from the model's calibration.tsv "
                   "(built with `genomod calibrate`).")
def brca1_cmd(model: str, mode: str, window: int, rc: bool, task: str, scores_tsv: Path | None, heads: bool,
              head_kind: str, layers: tuple[str, ...], n_splits: int, block_size: int, device: str, batch_size: int, n_boot: int, seed: int,
              table: Path | None, out: Path, calibrate: bool) -> None:
    """BRCA1 benchmark (Findlay et al. 2018, 3,893 SNVs): model scores vs CADD, phyloP, PolyPhen-2, SIFT."""
    from genomod.eval.brca1 import run_brca1

    if scores_tsv is not None and not scores_tsv.is_file():
        raise InputError(f"{scores_tsv}: file not found")
    result = run_brca1(out, model=model, mode=mode, window=window, rc=rc, heads=heads, layers=layers or None,
                       scores_tsv=scores_tsv, task=task, n_boot=n_boot, seed=seed, device=device,
                       batch_size=batch_size, table=table, head_kind=head_kind, n_splits=n_splits,
                       block_size=block_size, calibrate=calibrate)
    _print_summary(result, out)


@eval_group.command("probes")
@click.option("--model", default="default", show_default=True,
              help="Shipped model name, checkpoint folder, or fine-tuned variant model folder (`genomod finetune`; "
                   "its head's P(positive) ranks the variants, perplexity is skipped).")
@click.option("--probes", "probes", type=click.Path(path_type=Path), default=None,
              help="Probe folder (orfs.fa.gz, splice.fa.gz, heldout.fa.gz, markov_counts.npz; missing files "
                   "skip their probe). Default: the shipped genomod/data/probes/.")
@click.option("--mode", type=click.Choice(["fast", "exact", "embed"]), default="fast", show_default=True,
              help="fast: log p(alt) - log p(ref) at the site, one forward per tile; exact: full-window delta LL; "
                   "embed: delta_embed (embedding distance) from exact mode's forwards.")
@click.option("--rc/--no-rc", default=True, show_default=True, help="Average with the reverse-complement strand.")
@click.option("--window", type=click.IntRange(16), default=None,
              help="Context window (bp); default: the model's training context, at most 1024.")
@click.option("--max-records", type=click.IntRange(1), default=None,
              help="Use only the first N records of each probe file.")
@click.option("--max-variants-per-class", type=click.IntRange(1), default=None,
              help="Score at most N SNVs per class (random, --seed), e.g. to bound --mode exact.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True, help="Windows per batch.")
@click.option("--n-boot", type=click.IntRange(0), default=1000, show_default=True,
              help="Bootstrap resamples for 95% CIs (0: no CIs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for subsampling and bootstrap.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (probes.json).")
def probes_cmd(model: str, probes: Path | None, mode: str, rc: bool, window: int | None, max_records: int | None,
               max_variants_per_class: int | None, device: str, batch_size: int, n_boot: int, seed: int,
               out: Path) -> None:
    """Label-free biology probes: nonsense vs synonymous, canonical splice bases, perplexity vs Markov."""

    from genomod.data_paths import probes_dir
    from genomod.eval.probes import PROBE_FILES, probe_file, run_probes
    from genomod.utils import write_json

    if probes is None:
        probes = probes_dir()
        if not probes.is_dir():
            raise InputError(f"shipped probe folder {probes} not found; pass --probes DIR")
    elif not probes.is_dir():
        raise InputError(f"{probes}: probe folder not found")
    if not any(probe_file(probes, f) for f in PROBE_FILES.values()):
        raise InputError(f"{probes}: no probe files (expected {', '.join(PROBE_FILES.values())})")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    result = run_probes(model, probes, mode=mode, rc=rc, window=window, max_records=max_records,
                        max_variants_per_class=max_variants_per_class, seed=seed, n_boot=n_boot,
                        batch_size=batch_size, device=device)
    write_json(out / "probes.json", result, default=None)
    click.echo(_probes_table(result))
    click.echo(f"wrote probes.json to {out}")


def _probes_table(result: dict[str, Any]) -> str:
    """A short plain-text summary of run_probes' result."""

    def num(v: float | None, fmt: str = ".3f") -> str:
        return "n/a" if v is None else format(v, fmt)

    def row(name: str, m: dict[str, Any]) -> str:
        ci = f" [{num(m['auroc_lo'])}, {num(m['auroc_hi'])}]" if m.get("auroc_lo") is not None else ""
        return (f"{name:<20} {m['n_pos']:>7} {m['n_neg']:>7}  {num(m['auroc'])}{ci:<16}  "
                f"{num(m['mean_delta_pos'], '+.3f'):>8} {num(m['mean_delta_neg'], '+.3f'):>8}")

    s = result["settings"]
    lines = [f"model {s['model']}, mode {s['mode']}, rc {s['rc']}, window {s['window']}"]
    probes = result["probes"]
    if "nonsense" in probes or "splice" in probes:
        lines.append(f"{'probe (-delta)':<20} {'n_pos':>7} {'n_neg':>7}  {'AUROC [95% CI]':<21}  "
                     f"{'dpos':>8} {'dneg':>8}")
    if "nonsense" in probes:
        lines.append(row("nonsense vs syn", probes["nonsense"]["overall"]))
    if "exon_nonsense" in probes:
        lines.append(row("  in short exons", probes["exon_nonsense"]["overall"]))
    if "splice" in probes:
        sp = probes["splice"]
        lines.append(row("splice", sp["overall"]))
        for site in ("donor", "acceptor"):
            lines.append(row(f"  {site}", sp["by_site"][site]))
    if "perplexity" in probes:
        p = probes["perplexity"]
        text = f"perplexity: model {num(p['model']['perplexity'])} ({p['n_targets']} nt)"
        if "best_markov_order" in p:
            verdict = "model better" if p["model_beats_best_markov"] else "Markov better"
            text += (f" vs best Markov order {p['best_markov_order']} {num(p['best_markov_perplexity'])}: "
                     f"{verdict}")
        lines.append(text)
    for name, why in result["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    return "\n".join(lines)
