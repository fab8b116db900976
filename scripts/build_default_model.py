"""Rebuild the shipped ``default`` model end to end, or any of its steps.

    python scripts/build_default_model.py                       # every step below, in order
    python scripts/build_default_model.py --steps probes,eval,card   # re-run the evaluations and the card

Steps:
  mixture  data_prep.make_mixture over recipes/default_model/mixture.yaml, its stage-2 re-weighting
           mixture_stage2.yaml, mixture_stage4.yaml (stage 2 + splice-junction flanks marked) and
           mixture_stage5.yaml (stage 4 with the splice-annotated sources 2x; stage 8 reads it too) and
           mixture_stage10.yaml (stage 5 with the coding sources 2x) (../shared/data;
           BRCA1 name + 31-mer exclusion; probe and validation records held out by record before any window is
           cut, identical in all)
  train    scripts/pretrain.py -c recipes/default_model/pretrain.yaml, then pretrain_stage2.yaml (continued
           from the stage-1 model on the coding/splice-weighted mixture), then pretrain_stage4.yaml (continued
           from stage 2 with junction flanks weighted 5x), then pretrain_stage5.yaml (from stage 4, junction flanks
           10x, fresh data seed), then pretrain_stage8.yaml (from stage 5, junction flanks 25x, fresh data seed),
           then pretrain_stage10.yaml (from stage 8, junction flanks 25x, coding sources 2x, fresh data seed),
           then pretrain_stage14.yaml (from stage 10 with a junction-flank head, weight 0.5) and
           pretrain_stage15.yaml (from stage 14, head weight 2); each resumes if interrupted
  export   the final checkpoint + training metadata of every stage + mixture summary -> genomod/data/models/default/
  probedata  held-out probe sequences + k-mer Markov baselines fitted on the training rows -> genomod/data/probes/
  calibrate  background table (mean fast score, delta LL and delta_embed per 5-mer context and ALT on human
           training genome outside the benchmark loci) -> genomod/data/models/default/calibration.tsv
  probes   label-free probes (fast and exact scoring) -> docs/results/default_model/probes_*.json
  eval     `genomod eval brca1` in fast and exact mode, raw and calibrated -> docs/results/default_model/
  card     MODEL_CARD.md from the files the steps wrote (no hand-typed numbers)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's genomod and data_prep (the card reads the mixture recipes)
RECIPE = ROOT / "recipes" / "default_model"
MODEL_DIR = ROOT / "genomod" / "data" / "models" / "default"
PROBE_DIR = ROOT / "genomod" / "data" / "probes"
RESULTS = ROOT / "docs" / "results" / "default_model"
MIXTURE = ROOT / "work_local" / "mixture_default"
RUN = ROOT / "work_local" / "runs" / "default"
# (mixture recipe, shards, pretrain recipe, run folder) per training stage; paths as written in the recipes
STAGES = [("mixture.yaml", MIXTURE, "pretrain.yaml", RUN),
          ("mixture_stage2.yaml", ROOT / "work_local" / "mixture_stage2", "pretrain_stage2.yaml",
           ROOT / "work_local" / "runs" / "default_stage2"),
          # stage 4 (splice-junction flanks weighted in the loss) passed its pre-registered rule; stage 3 did not
          ("mixture_stage4.yaml", ROOT / "work_local" / "mixture_stage4", "pretrain_stage4.yaml",
           ROOT / "work_local" / "runs" / "default_stage4"),
          # stage 5 (twice the junctions, weighted 10x, fresh windows) passed its pre-registered rule too
          ("mixture_stage5.yaml", ROOT / "work_local" / "mixture_stage5", "pretrain_stage5.yaml",
           ROOT / "work_local" / "runs" / "default_stage5"),
          # stage 8 (junction flanks 25x) failed its own rule (nonsense 0.946) but is where stage 10 starts
          ("mixture_stage5.yaml", ROOT / "work_local" / "mixture_stage5", "pretrain_stage8.yaml",
           ROOT / "work_local" / "runs" / "default_stage8"),
          # stage 10 (stage 8 continued with the coding sources 2x) passed its pre-registered rule
          ("mixture_stage10.yaml", ROOT / "work_local" / "mixture_stage10", "pretrain_stage10.yaml",
           ROOT / "work_local" / "runs" / "default_stage10"),
          # stage 14 (a training-only junction-flank head) failed its own rule (splice 0.883) but is where stage 15
          # starts; stage 15 (head weight 2) passed its pre-registered rule
          ("mixture_stage10.yaml", ROOT / "work_local" / "mixture_stage10", "pretrain_stage14.yaml",
           ROOT / "work_local" / "runs" / "default_stage14"),
          ("mixture_stage10.yaml", ROOT / "work_local" / "mixture_stage10", "pretrain_stage15.yaml",
           ROOT / "work_local" / "runs" / "default_stage15")]
# stage 3 (mixture_stage3.yaml / pretrain_stage3.yaml, coding sequence in genomic form) was trained and NOT shipped:
# it failed its pre-registered probe rule (recipes/default_model/README.md). To rebuild it after the stages above:
#   python -m data_prep.make_mixture --recipe recipes/default_model/mixture_stage3.yaml --data-root ../shared/data \
#       --out work_local/mixture_stage3 && python scripts/pretrain.py -c recipes/default_model/pretrain_stage3.yaml
FINAL_RUN = STAGES[-1][3]  # the shipped model's run: calibration and probe outputs go beside it
# background genome for the calibration table: human training sequence, outside every benchmark locus
CALIBRATION_FASTA = "data/pretrain/genomic/grch38_chr20_chr21_10M.fa.gz"
# fast: runs of 128 consecutive sites (one tile per forward); exact: independent sites (one prefix each)
CALIBRATION_SITES = {"fast": (60000, 128), "exact": (2500, 1)}
CALIBRATION_ALSO = {"exact": ("--mode", "embed")}  # delta_embed's table comes from exact mode's forwards
MARKOV_MAX_ORDER = 9  # shipped (genomod/data/probes); orders up to MARKOV_CHECK_ORDER are checked, not shipped
MARKOV_CHECK_ORDER = 11
# scoring settings of the shipped evaluation, chosen on the probes (see recipes/default_model/README.md);
# exact mode also writes delta_embed (docs/results/default_model/embed_distance/README.md)
EVALS = [("fast", True), ("exact", True)]
# probe runs (mode, both strands): embed = delta_embed from exact mode's forwards
PROBE_RUNS = [("fast", False), ("fast", True), ("exact", True), ("embed", True)]
TARGETS = {"Evo 2 1B (zero-shot, its notebook)": 0.73, "phyloP": 0.781, "CADD v1.3": 0.804,
           "Evo 2 7B (zero-shot)": 0.875}


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def step_mixture(shared: Path) -> None:
    built: set[Path] = set()
    for recipe, shards, _, _ in STAGES:
        if shards in built:  # a later stage on the same mixture
            continue
        built.add(shards)
        run([sys.executable, "-m", "data_prep.make_mixture", "--recipe", str(RECIPE / recipe),
             "--data-root", str(shared / "data"), "--out", str(shards), "--overwrite"])


def step_train() -> None:
    for _, _, recipe, _ in STAGES:
        run([sys.executable, "scripts/pretrain.py", "-c", str(RECIPE / recipe)])


def _shipped_training() -> dict:
    """The ``training`` record of the model exported last (stages and mixture summary), or {}."""
    path = MODEL_DIR / "config.json"
    return json.loads(path.read_text()).get("training", {}) if path.is_file() else {}


def _mixture_summary() -> dict:
    """Sources of the stage-1 manifest, with each later stage's weight and training rows beside them.

    A stage whose shards are not on this machine (a later stage trained in a fresh checkout) is read from the
    last export instead, which recorded the same recipe's deterministic manifest."""
    keep = ("name", "path", "kind", "weight", "licence", "md5", "records", "bases", "dropped_name", "dropped_kmer",
            "thinned", "probe_records", "train_rows", "val_rows")
    shipped = _shipped_training().get("mixture", {})
    recipes = [f"recipes/default_model/{r}" for r, _, _, _ in STAGES]
    per_stage = []  # (weights by source, train rows by source, train rows) per stage
    for recipe, (_, shards, _, _) in zip(recipes, STAGES):
        if (shards / "manifest.json").is_file():
            m = json.loads((shards / "manifest.json").read_text())
            per_stage.append(({t["name"]: t["weight"] for t in m["sources"]},
                              {t["name"]: t["train_rows"] for t in m["sources"]}, m["counts"]["train"]))
            if recipe == recipes[0]:
                first = {**m, "sources": [{k: t.get(k) for k in keep} for t in m["sources"]]}
            continue
        if recipe not in shipped.get("recipes", []):
            raise SystemExit(f"{shards / 'manifest.json'} is missing and the last export has no {recipe}: run the "
                             "mixture step")
        j = shipped["recipes"].index(recipe)
        print(f"{recipe}: shards not here, its manifest summary is taken from the last export")
        per_stage.append(({t["name"]: t["stage_weights"][j] for t in shipped["sources"]},
                          {t["name"]: t["stage_train_rows"][j] for t in shipped["sources"]},
                          shipped["stage_train_rows"][j]))
        if recipe == recipes[0]:
            first = {**shipped, "sources": [{k: t.get(k) for k in keep} for t in shipped["sources"]]}
    sources = [dict(src) for src in first["sources"]]
    for src in sources:
        src["stage_weights"] = [w[src["name"]] for w, _, _ in per_stage]
        src["stage_train_rows"] = [r[src["name"]] for _, r, _ in per_stage]
    return {"recipes": recipes, "window": first["window"], "counts": first["counts"],
            "stage_train_rows": [n for _, _, n in per_stage], "exclusion": first["exclusion"],
            "split": first["split"], "sources": sources}


def _export_weights(src: Path, dst: Path, recipe: Path) -> None:
    """Copy the final weights, with Hyena-LI log-poles clamped to the recipe's ``max_log_pole`` as training read
    it (the last optimizer step of an older run may have left them a hair above it; a positive log-pole grows
    with length)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from genomod.train.config import load_config
    from genomod.utils import atomic_path

    bound = load_config(recipe).train.max_log_pole
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if bound is not None:
        for key in [k for k in tensors if k.endswith("log_poles")]:
            moved = int((tensors[key] > bound).sum())
            tensors[key] = torch.clamp(tensors[key], max=bound).contiguous()
            print(f"{key}: {moved} log-poles clamped to <= {bound}")
    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def step_export() -> None:
    final = STAGES[-1][3] / "final"
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    _export_weights(final / "model.safetensors", MODEL_DIR / "model.safetensors", RECIPE / STAGES[-1][2])
    doc = json.loads((final / "config.json").read_text())
    stages = []
    shipped = {st["recipe"]: st for st in _shipped_training().get("stages", [])}
    for mixture, _, recipe, run_dir in STAGES:
        name = f"recipes/default_model/{recipe}"
        if not (run_dir / "summary.json").is_file() and run_dir != STAGES[-1][3] and name in shipped:
            print(f"{name}: run folder not here, its training record is taken from the last export")
            stages.append(shipped[name])
            continue
        summary = json.loads((run_dir / "summary.json").read_text())
        stages.append({"recipe": name, "mixture": f"recipes/default_model/{mixture}",
                       "summary": {k: v for k, v in summary.items() if k not in ("train_curve", "val_curve")},
                       "train_curve": summary.get("train_curve", []), "val_curve": summary.get("val_curve", [])})
    doc["training"] = {"stages": stages, "mixture": _mixture_summary()}
    (MODEL_DIR / "config.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"exported {MODEL_DIR}")


def step_probedata() -> None:
    from genomod.eval.probes import save_markov_counts

    PROBE_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("orfs.fa.gz", "splice.fa.gz", "heldout.fa.gz"):
        shutil.copyfile(MIXTURE / "probes" / name, PROBE_DIR / name)
    counts = _markov_counts_all()
    save_markov_counts({k: v for k, v in counts.items() if k <= MARKOV_MAX_ORDER}, PROBE_DIR / "markov_counts.npz")
    _write_probe_provenance()


def _markov_counts_all() -> dict:
    """Next-base counts of every order up to MARKOV_CHECK_ORDER on the stage-1 training rows (fitted once, kept in
    the stage-1 run folder; the probes step fits them when that folder is not on this machine)."""
    from genomod.eval.probes import fit_markov_counts, load_markov_counts, save_markov_counts

    path = RUN / "markov_counts_all.npz"
    if path.is_file():
        return load_markov_counts(path)
    if not (MIXTURE / "train.h5").is_file():
        raise SystemExit(f"{path} and {MIXTURE / 'train.h5'} are missing: run the mixture step first")
    import h5py

    with h5py.File(MIXTURE / "train.h5", "r") as h5:
        tokens = h5["tokens"][:]
    counts = fit_markov_counts(tokens, MARKOV_CHECK_ORDER)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_markov_counts(counts, path)
    return counts


def _write_probe_provenance() -> None:
    manifest = json.loads((MIXTURE / "manifest.json").read_text())
    lines = ["# Probe sequences of the shipped `default` model (held out from its training)", "",
             "Written by `python scripts/build_default_model.py --steps mixture,probedata` "
             "(data_prep.make_mixture, recipes/default_model/mixture.yaml). Records were held out by record "
             "(seeded hash of source and record id) before any training window was cut; none of them is in "
             "the training or validation shards. Read by `genomod eval probes` (docs/evaluation.md).", "",
             "- `orfs.fa.gz`: mRNAs with the longest ATG..stop open reading frame (>= 300 nt) as `cds=S-E`.",
             "- `splice.fa.gz`: exon-intron-exon records and human splice windows with checked GT donors / AG "
             "acceptors as `donor=D acceptor=A` (1-based first / last intron base).",
             "- `heldout.fa.gz`: up to 600 kb of validation records across the sources, for perplexity.",
             f"- `markov_counts.npz`: next-base counts after every K-mer, K = 0..{MARKOV_MAX_ORDER}, fitted on all "
             f"{manifest['counts']['train']:,} training rows of {manifest['window']} tokens.", "",
             "| source | kind | licence | probe records |", "|---|---|---|---|"]
    for s in manifest["sources"]:
        if s["probe_records"]:
            lines.append(f"| {s['name']} (`{s['path']}`, md5 {s['md5']}) | {s['kind']} | {s['licence']} | "
                         f"{s['probe_records']} |")
    (PROBE_DIR / "PROVENANCE.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {PROBE_DIR}")


def step_calibrate(shared: Path) -> None:
    for mode, (n, cluster) in CALIBRATION_SITES.items():
        out = FINAL_RUN / f"calibration_{mode}.tsv"
        run([sys.executable, "-m", "genomod", "calibrate", "--model", "default", "-r", str(shared / CALIBRATION_FASTA),
             "--sites", str(n), "--cluster", str(cluster), "--mode", mode, *CALIBRATION_ALSO.get(mode, ()), "--rc",
             "--exclude", str(RECIPE / "exclude_benchmark_loci.bed"), "--batch-size", "32", "--out", str(out)])
    _merge_tables([FINAL_RUN / f"calibration_{m}.tsv" for m in CALIBRATION_SITES], MODEL_DIR / "calibration.tsv")


def _merge_tables(parts: list[Path], out: Path) -> None:
    from genomod.scoring.calibration import CalibrationTable, read_calibration

    tables = [read_calibration(p) for p in parts]
    cells = {key: cell for t in tables for key, cell in t.cells.items()}
    meta = {**tables[0].meta, "parts": [{k: v for k, v in t.meta.items() if k != "sources"} for t in tables]}
    CalibrationTable(cells, meta, tables[0].min_count).save(out)
    print(f"wrote {out}")


def _probe_key(mode: str, rc: bool) -> str:
    """Name of a probe run's outputs (``probes_<key>.json``), e.g. ``exact_rc``."""
    return f"{mode}_{'rc' if rc else 'fwd'}"


def step_probes() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for mode, rc in PROBE_RUNS:
        cap = ["--max-variants-per-class", "3000" if mode == "fast" else "250"]
        out = FINAL_RUN / f"probes_{_probe_key(mode, rc)}"
        run([sys.executable, "-m", "genomod", "eval", "probes", "--model", "default", "--mode", mode,
             "--rc" if rc else "--no-rc", "--batch-size", "32", *cap, "--out", str(out)])
        shutil.copyfile(out / "probes.json", RESULTS / f"probes_{_probe_key(mode, rc)}.json")
    # stronger Markov baselines than the shipped ones (orders up to MARKOV_CHECK_ORDER), same targets as the model
    from genomod.checkpoint import load_model
    from genomod.eval.probes import perplexity_probe, read_heldout

    res = perplexity_probe(load_model("default"), read_heldout(PROBE_DIR / "heldout.fa.gz"),
                           markov=_markov_counts_all(), batch_size=32, progress=False)
    (RESULTS / "perplexity_markov_all_orders.json").write_text(json.dumps(res, indent=2) + "\n")


def step_eval() -> None:
    for mode, rc in EVALS:
        out = RESULTS / f"brca1_{mode}"
        run([sys.executable, "-m", "genomod", "eval", "brca1", "--model", "default", "--mode", mode,
             "--rc" if rc else "--no-rc", "--calibrate", "--batch-size", "32", "--out", str(out)])


def _row(metrics: list[dict], score: str, group: str) -> dict | None:
    return next((m for m in metrics if m["score"] == score and m["group"] == group), None)


def _fmt(m: dict | None) -> str:
    if m is None:
        return "n/a"
    ci = f" [{m['auroc_lo']:.3f}, {m['auroc_hi']:.3f}]" if m.get("auroc_lo") is not None else ""
    return f"{m['auroc']:.3f}{ci}"


def _probe_lines() -> list[str]:
    lines = ["| probe (held-out sequences) | fast, forward | fast, both strands | exact, both strands | "
             "embedding distance (delta_embed), both strands |",
             "|---|---|---|---|---|"]
    runs = {}
    for key in (_probe_key(mode, rc) for mode, rc in PROBE_RUNS):
        p = RESULTS / f"probes_{key}.json"
        runs[key] = json.loads(p.read_text())["probes"] if p.is_file() else {}

    def cell(key: str, probe: str, sub: str | None = None) -> str:
        r = runs[key].get(probe) or {}
        r = (r.get("by_site") or {}).get(sub) or {} if sub else r.get("overall") or {}
        if r.get("auroc") is None:
            return "n/a"
        ci = f" [{r['auroc_lo']:.3f}, {r['auroc_hi']:.3f}]" if r.get("auroc_lo") is not None else ""
        return f"{r['auroc']:.3f}{ci} (n={r.get('n_pos', '?')}+{r.get('n_neg', '?')})"

    lines.append("| nonsense vs synonymous SNVs in ORFs, AUROC | " +
                 " | ".join(cell(k, "nonsense") for k in runs) + " |")
    lines.append("| ... the same ORFs cut into 60-180 bp exons by held-out introns, AUROC | " +
                 " | ".join(cell(k, "exon_nonsense") for k in runs) + " |")
    lines.append("| canonical GT/AG vs intronic +5..+20 SNVs, AUROC | " +
                 " | ".join(cell(k, "splice") for k in runs) + " |")
    for site in ("donor", "acceptor"):
        lines.append(f"| ... {site} sites only | " + " | ".join(cell(k, "splice", site) for k in runs) + " |")
    all_orders = RESULTS / "perplexity_markov_all_orders.json"
    ppl = json.loads(all_orders.read_text()) if all_orders.is_file() else runs["fast_fwd"].get("perplexity") or {}
    if ppl.get("markov"):
        lines += ["", f"Held-out perplexity per nucleotide (`perplexity_markov_all_orders.json`: Markov orders up to "
                  f"{MARKOV_CHECK_ORDER}; the shipped `markov_counts.npz` keeps orders <= {MARKOV_MAX_ORDER}; "
                  f"{ppl['n_targets']:,} targets in {ppl['n_windows']} "
                  f"windows of held-out records): model **{ppl['model']['perplexity']:.4f}** vs the best k-mer "
                  f"Markov baseline fitted on the training rows (order {ppl['best_markov_order']}) "
                  f"**{ppl['best_markov_perplexity']:.4f}** (model better: {ppl['model_beats_best_markov']}); "
                  "every order: " + ", ".join(f"{o['order']}: {o['perplexity']:.4f}" for o in ppl["markov"])]
    return lines


def _junction_weights() -> list[tuple[str, int, float]]:
    """(pretrain recipe, junction_flank, junction_weight) of each stage that weighs splice-junction flanks,
    read from the stage's recipes."""
    from data_prep.make_mixture import load_recipe
    from genomod.train.config import load_config

    out = []
    for mixture, _, recipe, _ in STAGES:
        flank, weight = load_recipe(RECIPE / mixture).junction_flank, load_config(RECIPE / recipe).data.junction_weight
        if flank and weight != 1.0:
            out.append((recipe, flank, weight))
    return out


def _stage_name(recipe: str) -> str:
    """The stage number a recipe is named after (``pretrain.yaml`` is stage 1, ``pretrain_stageN.yaml`` stage N):
    stages 3, 6, 7, 9, 11, 12 and 13 (and soup 1) were trained and not shipped; the shipped chain is 1, 2, 4, 5, 8, 10,
    14, 15."""
    stem = Path(recipe).stem
    return stem.split("_stage")[1] if "_stage" in stem else "1"


def _junction_heads() -> list[tuple[str, float]]:
    """(pretrain recipe, junction_aux_weight) of each stage that trained a junction-flank head."""
    from genomod.train.config import load_config

    return [(recipe, w) for _, _, recipe, _ in STAGES
            if (w := load_config(RECIPE / recipe).data.junction_aux_weight) > 0]


def step_card() -> None:
    from genomod.model import ModelConfig, count_parameters

    doc = json.loads((MODEL_DIR / "config.json").read_text())
    cfg = ModelConfig.from_dict(doc["model"])
    tr = doc["training"]
    mix = tr["mixture"]
    stages = tr["stages"]
    final = stages[-1]["summary"]
    tokens = sum(st["summary"]["tokens"] for st in stages)
    lines = [
        "# genomod `default` model card",
        "",
        "Generated by `python scripts/build_default_model.py --steps card` from the files the build wrote "
        "(`docs/results/default_model/`); every number below comes from those files.",
        "",
        "## Architecture",
        f"- StripedHyena-2-style hybrid, {cfg.num_layers} layers `{' '.join(cfg.layer_types)}`, width "
        f"{cfg.hidden_size}, {cfg.num_attention_heads} attention heads, MLP {cfg.inner_mlp_size}, "
        f"Hyena-SE/MR filter lengths {cfg.se_filter_length}/{cfg.mr_filter_length}, LI state {cfg.li_state_size}.",
        f"- Parameters: {count_parameters(cfg):,}; weights float32 safetensors; byte tokenizer "
        f"({doc['tokenizer_version']}); trained context {cfg.max_seqlen} bp (the default scoring window).",
        "",
        "## Training",
        f"{len(stages)} stages via `scripts/pretrain.py`, {tokens:,} tokens in all; each later stage continues from "
        "the one before on a re-weighted mixture of the same sources and hold-outs (`python -m "
        "data_prep.make_mixture`; recipes/default_model/README.md says what each stage changed).",
        "",
    ]
    for st in stages:
        s = st["summary"]
        lines.append(
            f"- Stage {_stage_name(st['recipe'])}: `{st['recipe']}` on `{st['mixture']}`: steps {s['steps']:,}; tokens {s['tokens']:,}; "
            f"wall time {s['wall_time_s'] / 3600:.2f} h on {s['device']} ({s.get('precision')}, 2 threads); "
            f"median {s.get('median_tokens_per_s', 0):,.0f} tokens/s"
            + (f" (wall time of the last segment: the run resumed from `{Path(s['resumed_from']).name}`)"
               if s.get("resumed_from") else "")
            + f"; final validation loss {s['final_val_loss']:.4f}.")
    lines += [
        "- Loss: next-base cross-entropy weighted per base (soft-masked repeats 0.1, N and record separators 0"
        + "".join(f"; in stage {_stage_name(r)} the {flank} bases each side of annotated splice junctions {w:g}, "
                  "validation 1" for r, flank, w in _junction_weights()) + "); reverse-complement "
        "augmentation on half the training windows."
        + "".join(f" In stage {_stage_name(r)} a junction-flank head on the last block's output (training only, "
                  f"not exported) added its binary cross-entropy times {w:g}." for r, w in _junction_heads()),
        "- Run history (resumes, schedule changes): recipes/default_model/README.md.",
        f"- Final validation loss {final['final_val_loss']:.4f} nats/nt (perplexity {final['final_val_ppl']:.3f}; "
        "uniform over ACGT = 4) on held-out records of every source (the same validation rows in every stage).",
        "",
    ]
    for st in stages:
        lines += [f"Validation curve, stage {_stage_name(st['recipe'])} (step: loss): "
                  + ", ".join(f"{v['step']}: {v['val_loss']:.4f}" for v in st["val_curve"]), ""]
    lines += [
        "### Data",
        f"{' / '.join(f'{n:,}' for n in mix['stage_train_rows'])} training windows (stage "
        f"{' / '.join(_stage_name(st['recipe']) for st in stages)}) and {mix['counts']['val']:,} validation windows of "
        f"{mix['window']} bp; "
        f"{mix['counts']['probe_orfs']} ORF and {mix['counts']['probe_splice']} splice probe records held out. "
        "Benchmark exclusion: records naming BRCA1 and records with >= 5% of their 31-mer positions in the human "
        "BRCA1 locus slices (hg19 and hg38, genomod/data/reference) were dropped (counts below).",
        "",
        "| source | kind | weight (per stage) | licence | Mb kept | train rows (per stage) | dropped (name / 31-mer) |",
        "|---|---|---|---|---|---|---|",
    ]
    for src in mix["sources"]:
        weights = " / ".join(str(w) for w in src["stage_weights"])
        rows = " / ".join(f"{n:,}" for n in src["stage_train_rows"])
        lines.append(f"| {src['name']} | {src['kind']} | {weights} | {src['licence']} | "
                     f"{src['bases'] / 1e6:.2f} | {rows} | {src['dropped_name']} / {src['dropped_kmer']} |")
    lines += ["", "## Label-free probes (held-out sequences; the model's settings were chosen on these)", ""]
    lines += _probe_lines()
    lines += ["", "## BRCA1 (Findlay et al. 2018), LOF vs FUNC+INT, 3,893 SNVs", "",
              "Never used for any choice. Raw = delta log-likelihood; calibrated = minus the model's mean score at "
              "background sites with the same 5-base context and ALT (`calibration.tsv`); embedding distance = "
              "minus the mean L2 distance of the last block's hidden states after the variant (defined on the "
              "probes before any BRCA1 run: `embed_distance/README.md`).", "",
              "| score | overall | coding | noncoding |", "|---|---|---|---|"]
    best_overall: dict[str, float] = {}
    for mode, rc in EVALS:
        mpath = RESULTS / f"brca1_{mode}" / "metrics.json"
        if not mpath.is_file():
            continue
        metrics = json.loads(mpath.read_text())
        rows = metrics["metrics"]
        raw = "-delta_fast" if mode == "fast" else "-delta_ll_sum"
        strand = "both strands" if rc else "forward"
        scores = [(raw, f"zero-shot {mode} ({strand}), raw"), (raw + "_cal", f"zero-shot {mode} ({strand}), calibrated")]
        if mode == "exact":
            scores += [("-delta_embed", f"zero-shot embedding distance ({strand}; delta_embed), raw"),
                       ("-delta_embed_cal", f"zero-shot embedding distance ({strand}; delta_embed), calibrated")]
        for score, label in scores:
            m = _row(rows, score, "overall")
            if m is not None:
                best_overall[label] = m["auroc"]
            lines.append(f"| {label} | {_fmt(m)} | {_fmt(_row(rows, score, 'region=coding'))} | "
                         f"{_fmt(_row(rows, score, 'region=noncoding'))} |")
        if mode == "fast":
            for score, label in (("phylop", "phyloP (from the table)"), ("cadd", "CADD (from the table)"),
                                 ("consequence_rule", "consequence-only rule")):
                lines.append(f"| {label} | {_fmt(_row(rows, score, 'overall'))} | "
                             f"{_fmt(_row(rows, score, 'region=coding'))} | "
                             f"{_fmt(_row(rows, score, 'region=noncoding'))} |")
    lines += ["", "Against the published targets (overall AUROC):", ""]
    for label, target in TARGETS.items():
        verdict = [f"{k} {'beats' if v > target else 'does not beat'} it ({v:.3f})" for k, v in best_overall.items()]
        lines.append(f"- {label} {target}: " + "; ".join(verdict))
    lines += [
        "",
        "## Known limits",
        f"- A {count_parameters(cfg) / 1e6:.1f} M-parameter model trained for "
        f"{tokens / 1e6:.0f} M tokens on a 2-core CPU: far smaller than Evo 2; use its scores as a baseline, "
        "not for clinical interpretation.",
        f"- Trained at {cfg.max_seqlen} bp; longer windows run (the operators are length-agnostic) but were not "
        "trained.",
        "- Probe ORFs and splice records are held out by record, but orthologs of held-out genes from other species "
        "(and other isoforms of a held-out human transcript) can be in the training data.",
    ]
    text = "\n".join(lines) + "\n"
    (MODEL_DIR / "MODEL_CARD.md").write_text(text)
    (RESULTS / "MODEL_CARD.md").write_text(text)
    print(text)


STEPS = ("mixture", "train", "export", "probedata", "calibrate", "probes", "eval", "card")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of the steps")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="the shared/ folder with data/")
    args = ap.parse_args()
    steps = args.steps.split(",")
    for step in steps:
        if step not in STEPS:
            sys.exit(f"unknown step {step!r} (steps: {', '.join(STEPS)})")
    shared = Path(args.shared)
    for step in STEPS:
        if step not in steps:
            continue
        if step in ("mixture", "calibrate"):
            globals()[f"step_{step}"](shared)
        else:
            globals()[f"step_{step}"]()


if __name__ == "__main__":
    main()
