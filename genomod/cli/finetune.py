"""``genomod finetune``: fine-tune a model on a task (LoRA, full or frozen); ``genomod finetune merge``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click


@click.group("finetune", invoke_without_command=True)
@click.option("--config", "-c", "config", default=None, type=click.Path(dir_okay=False),
              help="YAML or JSON task config (see docs/finetuning.md and recipes/finetune/).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Dotted override, e.g. --set mode=full --set train.lr=1e-4 (repeatable).")
@click.option("--check", is_flag=True, help="Validate the config, print the resolved config and exit.")
@click.pass_context
def finetune(ctx: click.Context, config: str | None, overrides: tuple[str, ...], check: bool) -> None:
    """Fine-tune a genomod or Evo 2 model on a sequence or variant-effect task (resumable; see `merge`)."""
    if ctx.invoked_subcommand is not None:
        return
    from genomod.errors import ConfigError
    from genomod.finetuning import finetune as run
    from genomod.finetuning import load_config

    if config is None:
        raise ConfigError("genomod finetune: give a task config with -c/--config (e.g. recipes/finetune/brca1.yaml)")
    cfg = load_config(config, list(overrides))
    if check:
        click.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    logging.getLogger("genomod").addHandler(logging.StreamHandler())
    logging.getLogger("genomod").setLevel(logging.INFO)
    card = run(cfg)
    if not card:
        return
    click.echo(f"done: {cfg.task} ({cfg.mode}) in {card['wall_time_s']:.1f} s; "
               f"trainable {card['parameters']['trainable']:,} of {card['parameters']['total']:,} parameters")
    for split, m in card["metrics"].items():
        if split == "per_fold":
            continue
        keys = [k for k in ("accuracy", "macro_f1", "auroc", "spearman", "r2") if m.get(k) is not None]
        click.echo(f"  {split} (n={m['n']}): " + ", ".join(f"{k} {m[k]:.3f}" for k in keys))
    click.echo(f"wrote {cfg.out_dir}/task_card.json" + (f" and the model {card['model_dir']}" if card["model_dir"]
                                                        else ""))


@finetune.command("merge")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: FOLDER itself, beside the adapters).")
def merge(folder: Path, out: Path | None) -> None:
    """Fold the LoRA adapters of a fine-tuned model folder into a plain genomod checkpoint."""
    from genomod.finetuning import merge_adapters

    dst = merge_adapters(folder, out)
    click.echo(f"wrote merged checkpoint {dst}/model.safetensors (genomod.load_model / genomod score --model {dst})")
