"""Pretrain a genomod model from HDF5 shards with Lightning.

    python scripts/pretrain.py --config configs/pretrain_tiny_cpu.yaml [--set train.lr=1e-3 ...]

Same as ``genomod train``. See docs/training.md for the config keys, resume, DDP/FSDP, SLURM and torchrun.
"""

from __future__ import annotations

import argparse
import logging
import sys

from genomod.errors import GenomodError


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, validate the config, train; config errors exit 2 with a one-line message."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", "-c", default=None, help="YAML or JSON config (default: built-in defaults)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override, e.g. train.lr=1e-3 (repeatable)")
    ap.add_argument("--check", action="store_true", help="validate the config, print it and exit")
    ap.add_argument("--debug", action="store_true", help="full tracebacks")
    args = ap.parse_args(argv)
    logging.getLogger("genomod").addHandler(logging.StreamHandler())
    logging.getLogger("genomod").setLevel(logging.INFO)
    try:
        from genomod.train import load_config, run_pretraining

        cfg = load_config(args.config, args.overrides)
        if args.check:
            import json

            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        summary = run_pretraining(cfg)
    except GenomodError as exc:
        if args.debug:
            raise
        print(f"pretrain: error: {exc}", file=sys.stderr)
        return 2
    if summary:
        print(f"done: {summary['steps']} steps, {summary['tokens']:,} tokens, val loss {summary['final_val_loss']}, "
              f"final model {summary['final_model']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
