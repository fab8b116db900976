"""Average the weights of checkpoints of one architecture (a "model soup") and report its validation loss.

    python scripts/soup.py work_local/runs/default_stage6/final work_local/runs/default_stage8/final \
        --val-config recipes/default_model/pretrain_stage5.yaml --out work_local/runs/soup/final

``--weights`` (default uniform) must sum to 1. With ``--val-config`` the soup's validation loss is computed on that
pretraining recipe's validation windows, exactly as a run logs it. The folder is a genomod checkpoint; its
config.json records the members, weights and validation loss under ``training``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genomod.checkpoint import save_model
from genomod.errors import GenomodError
from genomod.train import average_checkpoints, load_config, validation_loss


def main(argv: list[str] | None = None) -> int:
    """Build the soup, write it to ``--out`` and print a JSON summary; errors exit 2 with one line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="checkpoint folders or shipped names (at least two)")
    ap.add_argument("--weights", type=float, nargs="+", help="one weight per checkpoint, summing to 1")
    ap.add_argument("--val-config", type=Path, help="pretraining recipe whose validation windows to score")
    ap.add_argument("--out", type=Path, required=True, help="output checkpoint folder")
    args = ap.parse_args(argv)
    try:
        model = average_checkpoints(args.checkpoints, args.weights)
        n = len(args.checkpoints)
        summary = {"soup": {"members": [str(p) for p in args.checkpoints],
                            "weights": args.weights or [1.0 / n] * n}}
        if args.val_config is not None:
            summary["val_loss"] = validation_loss(model, load_config(args.val_config))
            summary["val_config"] = str(args.val_config)
        save_model(model, args.out, training=summary)
    except (GenomodError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
