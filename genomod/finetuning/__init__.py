"""Fine-tuning (``genomod finetune``): LoRA (peft), full or frozen-backbone training of a head for sequence
classification / regression and variant-effect tasks, on any genomod checkpoint (shipped, trained or converted
Evo 2), with the pretraining machinery (Lightning, safetensors checkpoints, exact resume, DDP).

``finetune(config)`` runs a task config (path, dict or ``FinetuneConfig``); ``merge_adapters(folder)`` folds LoRA
adapters into a plain checkpoint. This package sits above ``genomod.train`` and ``genomod.heads``; nothing below
imports it (the scorer reads fine-tuned variant models through ``genomod.scoring.finetuned``).
"""

from __future__ import annotations

from genomod.finetuning.config import FinetuneConfig, load_config
from genomod.finetuning.merge import merge_adapters
from genomod.finetuning.run import finetune

__all__ = ["FinetuneConfig", "finetune", "load_config", "merge_adapters"]
