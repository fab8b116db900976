"""Fine-tuning benchmarks: LoRA, full and frozen on the shipped recipes, beside baselines; JSON per run.

    # once: the splice data with a test split the base model never trained on (see the data_prep module)
    python -m data_prep.prepare_splice_finetune --data-root ../shared/data \
        --recipe recipes/default_model/mixture.yaml --recipe recipes/default_model/mixture_stage2.yaml \
        --out work_local/finetune/splice
    # all runs (each in its own process: CPU time and peak memory per run), results in docs/results/finetune/
    python scripts/finetune_benchmarks.py --out docs/results/finetune

Per task and mode it runs ``genomod finetune -c recipes/finetune/<task>.yaml --set mode=<mode>`` and writes
``<task>_<mode>.json`` (metrics with 95% CIs, trainable parameters and fraction, wall and CPU time, peak memory,
device, data and base digests). Baselines: ``splice_kmer_logistic.json`` (k-mer counts, k = 1..6, L2 logistic
regression, C chosen on the val split; scikit-learn) and ``brca1_reference.json`` (zero-shot delta log-likelihood
and the supervised logistic head on frozen embeddings, both through ``genomod.eval.brca1.run_brca1`` with the
same 100 bp block-grouped 5-fold CV). ``--params`` adds ``parameters.json``: trainable parameters of LoRA vs full
on the base model and on the Evo 2 7B shape (meta device, nothing allocated); ``--evo2-memory`` adds the peak
memory of one training step of depth-reduced Evo 2 7B models (1 and 2 blocks) for LoRA and full, whose
difference is the memory per layer. ``--ship best`` (or a mode) copies that mode's BRCA1 model (fit on all
variants) to ``OUT/brca1_model/``. ``summary.md`` tabulates everything. No number is written by hand.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes" / "finetune"
MODE_SETTINGS = {"lora": [], "full": ["train.lr=1e-4"], "frozen": []}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_finetune(task: str, mode: str, work: Path, overrides: list[str], in_process: bool) -> dict[str, Any]:
    """One fine-tuning run; returns its benchmark record (task card digest + timing)."""
    out = work / f"{task}_{mode}"
    sets = [f"mode={mode}", f"output.dir={out}", "output.progress_bar=false", *MODE_SETTINGS[mode], *overrides]
    cmd = [sys.executable, "-m", "genomod", "finetune", "-c", str(RECIPES / f"{task}.yaml")]
    for s in sets:
        cmd += ["--set", s]
    t0, c0, p0 = time.time(), _children_cpu(), time.process_time()
    if in_process:
        from genomod.finetuning import finetune, load_config

        finetune(load_config(RECIPES / f"{task}.yaml", sets))
        cpu = time.process_time() - p0
    else:
        subprocess.run(cmd, check=True, cwd=REPO)
        cpu = _children_cpu() - c0
    card = json.loads((out / "task_card.json").read_text())
    return {"task": task, "mode": mode, "command": " ".join(cmd), "metrics": card["metrics"],
            "parameters": card["parameters"], "wall_time_s": round(time.time() - t0, 3),
            "cpu_time_s": round(cpu, 3), "fit_wall_time_s": card["fit_wall_time_s"], "device": card["device"],
            "memory": card["memory"], "base": card["base"], "data": card["data"], "split": card["split"],
            "run_dir": str(out)}


def kmer_features(seqs: list[str], ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6)) -> np.ndarray:
    """Counts of every k-mer (ACGT only) for each k, concatenated: (n, sum 4^k)."""
    code = np.full(256, -1, dtype=np.int64)
    for i, b in enumerate(b"ACGT"):
        code[b] = i
    blocks = []
    for k in ks:
        mat = np.zeros((len(seqs), 4**k), dtype=np.float32)
        for r, s in enumerate(seqs):
            c = code[np.frombuffer(s.upper().encode(), dtype=np.uint8)]
            if len(c) < k:
                continue
            idx = np.zeros(len(c) - k + 1, dtype=np.int64)
            bad = np.zeros(len(c) - k + 1, dtype=bool)
            for j in range(k):
                idx = idx * 4 + np.maximum(c[j : j + len(idx)], 0)
                bad |= c[j : j + len(idx)] < 0
            np.add.at(mat[r], idx[~bad], 1.0)
        blocks.append(mat)
    return np.concatenate(blocks, axis=1)


def kmer_baseline(tsv: Path, n_boot: int, max_rows: int | None = None) -> dict[str, Any]:
    """k-mer logistic regression on the splice TSV: fit on train, C chosen on val, scored on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from genomod.finetuning.metrics import classification_metrics

    t0, c0 = time.time(), time.process_time()
    df = pd.read_csv(tsv, sep="\t", dtype=str)
    if max_rows:
        df = df.groupby("split", group_keys=False).head(max_rows)
    classes = ["none", "donor", "acceptor"]
    classes = [c for c in classes if c in set(df["label"])] + sorted(set(df["label"]) - set(classes))
    y = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    X = kmer_features(df["sequence"].tolist())
    tr, va, te = ((df["split"] == s).to_numpy() for s in ("train", "val", "test"))
    scaler = StandardScaler().fit(X[tr])
    best = None
    for C in (0.001, 0.01, 0.1, 1.0):
        model = LogisticRegression(C=C, max_iter=2000).fit(scaler.transform(X[tr]), y[tr])
        acc = float((model.predict(scaler.transform(X[va])) == y[va]).mean()) if va.any() else 0.0
        if best is None or acc > best[0]:
            best = (acc, C, model)
    assert best is not None
    probs = best[2].predict_proba(scaler.transform(X[te]))
    metrics = classification_metrics(y[te], probs, classes, n_boot=n_boot)
    return {"task": "splice", "mode": "kmer_logistic", "features": "k-mer counts, k = 1..6 (5,460 features)",
            "C": best[1], "val_accuracy": best[0], "metrics": {"test": metrics},
            "rows": {s: int(m.sum()) for s, m in (("train", tr), ("val", va), ("test", te))},
            "wall_time_s": round(time.time() - t0, 3), "cpu_time_s": round(time.process_time() - c0, 3)}


def brca1_reference(work: Path, base: str, n_boot: int, table: Path | None) -> dict[str, Any]:
    """Zero-shot (exact delta LL) and the logistic head on frozen embeddings (nested block CV), on BRCA1."""
    from genomod.eval.brca1 import run_brca1

    t0, c0 = time.time(), time.process_time()
    res = run_brca1(work / "brca1_reference", model=base, mode="exact", heads=True, n_boot=n_boot, device="cpu",
                    table=table)
    tab = res["table"]
    overall = tab[tab["group"] == "overall"].drop_duplicates("column").set_index("column")
    keep = {}
    for col in ("delta_ll_sum", "delta_ll_mean", "head_oof"):  # zero-shot scores are evaluated negated
        if col in overall.index:
            row = overall.loc[col]
            keep[col] = {"score": str(row["score"]), **{k: (None if pd.isna(row[k]) else float(row[k]))
                                                        for k in ("auroc", "auroc_lo", "auroc_hi", "auprc",
                                                                  "n_used", "n_pos")}}
    return {"task": "brca1", "mode": "reference", "scores": keep, "wall_time_s": round(time.time() - t0, 3),
            "cpu_time_s": round(time.process_time() - c0, 3)}


def parameter_counts(base: str, evo2_memory: bool, work: Path) -> dict[str, Any]:
    """Trainable parameters of LoRA vs full on ``base`` and on Evo 2 7B (meta); optional depth-reduced memory."""
    import torch

    from genomod.checkpoint import load_model
    from genomod.finetuning.adapters import wrap_lora
    from genomod.finetuning.config import DEFAULTS
    from genomod.model import build_model

    lo = DEFAULTS["lora"]

    def counts(model: torch.nn.Module) -> dict[str, Any]:
        total = sum(p.numel() for p in model.parameters())
        wrapped = wrap_lora(model, lo["r"], lo["alpha"], 0.0, list(lo["targets"]))
        lora = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
        return {"full_trainable": int(total), "lora_trainable": int(lora),
                "lora_fraction_of_base": lora / total, "lora_r": lo["r"], "lora_targets": list(lo["targets"])}

    out: dict[str, Any] = {"base": {"name": base, **counts(load_model(base))},
                           "evo2-7b": {"meta_device": True, **counts(build_model("evo2-7b", meta=True))}}
    if evo2_memory:
        rows = []
        for layers in (1, 2):
            for mode in ("lora", "full"):
                cmd = [sys.executable, __file__, "--_memory-probe", f"{layers},{mode}"]
                res = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        per_layer = {}
        for mode in ("lora", "full"):
            a = next(r for r in rows if r["layers"] == 1 and r["mode"] == mode)
            b = next(r for r in rows if r["layers"] == 2 and r["mode"] == mode)
            per_layer[mode] = b["peak_rss_gb"] - a["peak_rss_gb"]
        out["evo2-7b"]["depth_reduced_cpu"] = {"runs": rows, "peak_rss_gb_per_layer": per_layer,
                                               "note": "one AdamW step, batch 1 x 256 tokens, float32, CPU"}
    return out


def _memory_probe(spec: str) -> None:
    """Child process: one training step of an Evo 2 7B-shaped model with ``layers`` blocks; prints peak RSS."""
    import torch

    from genomod.finetuning.adapters import wrap_lora
    from genomod.model import ModelConfig, build_model

    layers, mode = spec.split(",")
    cfg = ModelConfig.preset("evo2-7b", layer_types=["SE", "MR"][: int(layers)], dtype="float32")
    model = build_model(cfg)
    if mode == "lora":
        for p in model.parameters():
            p.requires_grad_(False)
        model = wrap_lora(model, 8, 16, 0.0, ["projections", "hyena_out", "mlp", "attention"]).get_base_model()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    tokens = torch.randint(65, 85, (1, 256))
    logits = model(tokens).logits
    logits.float().logsumexp(-1).mean().backward()
    opt.step()
    print(json.dumps({"layers": int(layers), "mode": mode, "trainable": sum(p.numel() for p in params),
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def summary_markdown(records: list[dict[str, Any]]) -> str:
    """One table row per run: the test / out-of-fold metrics with CIs, trainable fraction, CPU time."""
    def fmt(m: dict[str, Any], k: str) -> str:
        v = m.get(k)
        if v is None:
            return "n/a"
        lo, hi = m.get(f"{k}_lo"), m.get(f"{k}_hi")
        return f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")

    lines = ["| task | method | split | n | accuracy | macro-F1 | AUROC | trainable | CPU s | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r.get("mode") == "reference":
            for score, m in r["scores"].items():
                auroc = (f"{m['auroc']:.3f} [{m['auroc_lo']:.3f}, {m['auroc_hi']:.3f}]"
                         if m["auroc"] is not None and m["auroc_lo"] is not None else "n/a")
                lines.append(f"| {r['task']} | {score} | all (OOF for the head) | {int(m['n_used'] or 0)} | | | "
                             f"{auroc} | | {r['cpu_time_s']:.0f} | {r['wall_time_s']:.0f} |")
            continue
        split = "test" if "test" in r["metrics"] else "out_of_fold"
        m = r["metrics"].get(split, {})
        frac = r.get("parameters", {}).get("trainable_fraction")
        lines.append(f"| {r['task']} | {r['mode']} | {split} | {m.get('n', '')} | {fmt(m, 'accuracy')} | "
                     f"{fmt(m, 'macro_f1')} | {fmt(m, 'auroc')} | "
                     f"{'' if frac is None else f'{100 * frac:.2f}%'} | {r['cpu_time_s']:.0f} | "
                     f"{r['wall_time_s']:.0f} |")
    return "\n".join(lines) + "\n"


def ship_brca1_model(records: list[dict[str, Any]], which: str, dest: Path, limit_mb: float = 25.0) -> Path:
    """Copy the model folder of a BRCA1 run (fit on all variants) to ``dest``; refuse one over ``limit_mb``.
    ``which``: a mode of task brca1, ``TASK:MODE`` (e.g. brca1_aux:lora), or best (highest out-of-fold AUROC)."""
    import shutil

    from genomod.utils import atomic_dir

    runs = {(r["mode"] if r["task"] == "brca1" else f"{r['task']}:{r['mode']}"): r for r in records
            if r["task"].startswith("brca1") and r["mode"] in MODE_SETTINGS and "out_of_fold" in r["metrics"]}
    if which == "best":
        which = max(runs, key=lambda m: runs[m]["metrics"]["out_of_fold"].get("auroc") or -1.0)
    if which not in runs:
        raise SystemExit(f"--ship {which}: no BRCA1 run of that mode (ran: {', '.join(runs) or 'none'})")
    src = Path(runs[which]["run_dir"]) / "model"
    size = sum(p.stat().st_size for p in src.iterdir()) / 2**20
    if size > limit_mb:
        raise SystemExit(f"--ship {which}: {src} holds {size:.1f} MB, more than {limit_mb} MB")
    with atomic_dir(dest) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    return dest


def _write(path: Path, doc: Any) -> None:
    from genomod.utils import write_json

    write_json(path, doc, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "finetune")
    ap.add_argument("--work", type=Path, default=REPO / "work_local" / "finetune" / "bench")
    ap.add_argument("--tasks", default="splice,brca1")
    ap.add_argument("--modes", default="lora,full,frozen")
    ap.add_argument("--base", default="default", help="base model for every run (recipes use default)")
    ap.add_argument("--splice-tsv", type=Path, default=REPO / "work_local" / "finetune" / "splice" / "splice.tsv")
    ap.add_argument("--brca1-table", type=Path, default=None, help="BRCA1 table instead of the shipped one")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override for every fine-tuning run (repeatable)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--no-baselines", action="store_true", help="skip the k-mer baseline and BRCA1 reference")
    ap.add_argument("--params", action="store_true", help="also parameters.json (LoRA vs full, Evo 2 7B on meta)")
    ap.add_argument("--evo2-memory", action="store_true", help="with --params: depth-reduced Evo 2 7B memory runs")
    ap.add_argument("--in-process", action="store_true", help="run fine-tuning in this process (tests)")
    ap.add_argument("--kmer-max-rows", type=int, default=None, help="(tests) rows per split for the k-mer baseline")
    ap.add_argument("--ship", default=None, metavar="MODE|TASK:MODE|best",
                    help="copy the BRCA1 model of this mode (or TASK:MODE, e.g. brca1_aux:lora; best: highest "
                         "out-of-fold AUROC) to OUT/brca1_model/ (at most 25 MB)")
    ap.add_argument("--_memory-probe", dest="memory_probe", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_probe:
        _memory_probe(args.memory_probe)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    for task in [t for t in args.tasks.split(",") if t]:
        extra = [f"base={args.base}", f"eval.n_boot={args.n_boot}", *args.overrides]
        if task == "splice":
            if not args.splice_tsv.is_file():
                raise SystemExit(f"{args.splice_tsv}: run python -m data_prep.prepare_splice_finetune first")
            extra.append(f"data.path={args.splice_tsv}")
        if task == "brca1" and args.brca1_table is not None:
            extra.append(f"data.path={args.brca1_table}")
        for mode in [m for m in args.modes.split(",") if m]:
            rec = run_finetune(task, mode, args.work, extra, args.in_process)
            _write(args.out / f"{task}_{mode}.json", rec)
        if args.no_baselines:
            continue
        if task == "splice":
            rec = kmer_baseline(args.splice_tsv, args.n_boot, args.kmer_max_rows)
            _write(args.out / "splice_kmer_logistic.json", rec)
        if task == "brca1":
            rec = brca1_reference(args.work, args.base, args.n_boot, args.brca1_table)
            _write(args.out / "brca1_reference.json", rec)
    records = all_records(args.out)  # earlier invocations' runs too (e.g. --tasks splice, then --tasks brca1)
    if args.ship:
        ship_brca1_model(records, args.ship, args.out / "brca1_model")
    if args.params:
        _write(args.out / "parameters.json", parameter_counts(args.base, args.evo2_memory, args.work))
    (args.out / "summary.md").write_text(summary_markdown(records))
    print(summary_markdown(records))
    return 0


def all_records(out: Path) -> list[dict[str, Any]]:
    """Every run record written to ``out`` (``<task>_<mode>.json`` and the baselines), in file-name order."""
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.name != "parameters.json"]


if __name__ == "__main__":
    sys.exit(main())
