"""``genomod convert``: import checkpoints of other models (``genomod convert evo2``)."""

from __future__ import annotations

import click

from genomod.convert.evo2 import EVO2_CHECKPOINT_NAMES, EVO2_CONFIGS


@click.group("convert")
def convert() -> None:
    """Convert checkpoints of other DNA models into genomod checkpoints."""


@convert.command("evo2")
@click.option("--checkpoint", "checkpoint", required=True, type=click.Path(dir_okay=False),
              help="Evo 2 / vortex state dict: NAME.pt, or NAME.pt (or NAME.pt.part0) for split NAME.pt.partN files.")
@click.option("--config", "config", default=None, metavar="NAME|PATH.yml",
              help=f"Evo 2 config: {', '.join(EVO2_CONFIGS)} or a YAML path. Default: from the file name "
                   f"({', '.join(f'{k}.pt={v}' for k, v in EVO2_CHECKPOINT_NAMES.items())}).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output genomod checkpoint folder (model.safetensors + config.json).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="Store weights in this dtype (default: as stored in the checkpoint; runs in bfloat16).")
def evo2(checkpoint: str, config: str | None, out: str, dtype: str | None) -> None:
    """Convert an Evo 2 checkpoint (e.g. evo2_7b.pt) for `genomod score/eval --model OUT`."""
    from genomod.checkpoint import read_checkpoint_config
    from genomod.convert.evo2 import convert_evo2
    from genomod.model import ModelConfig, count_parameters

    path = convert_evo2(checkpoint, out, config=config, dtype=dtype)
    doc = read_checkpoint_config(path)
    src = doc["training"]["source"]
    cfg = ModelConfig.from_dict(doc["model"])
    click.echo(f"wrote {path} ({cfg.name}: {cfg.num_layers} layers, hidden {cfg.hidden_size}, "
               f"{count_parameters(cfg) / 1e9:.2f}B parameters; source sha256 {src['sha256'][:16]}..., "
               f"{src['dropped_keys']} TE/rotary keys dropped)")
