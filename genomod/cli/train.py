"""``genomod train``: the pretraining entry point (scripts/pretrain.py is a thin wrapper over it)."""

from __future__ import annotations

import json
import logging

import click


@click.command("train")
@click.option("--config", "-c", "config", default=None, type=click.Path(dir_okay=False),
              help="YAML or JSON training config (see docs/training.md).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Dotted override, e.g. --set train.lr=1e-3 (repeatable).")
@click.option("--check", is_flag=True,
              help="Validate the config and its inputs (shards, checkpoints), print the resolved config and exit.")
def train(config: str | None, overrides: tuple[str, ...], check: bool) -> None:
    """Pretrain a model on HDF5 shards (Lightning; resumable safetensors checkpoints)."""
    from genomod.train import check_inputs, load_config, run_pretraining

    cfg = load_config(config, list(overrides))
    if check:
        check_inputs(cfg)
        click.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    logging.getLogger("genomod").addHandler(logging.StreamHandler())
    logging.getLogger("genomod").setLevel(logging.INFO)
    summary = run_pretraining(cfg)
    if summary:
        click.echo(f"done: {summary['steps']} steps, {summary['tokens']:,} tokens, "
                   f"val loss {summary['final_val_loss']}, final model {summary['final_model']}")
