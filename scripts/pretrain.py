"""Pretrain a genomod model from HDF5 shards with Lightning: a thin wrapper over ``genomod train``.

    python scripts/pretrain.py --config configs/pretrain_tiny_cpu.yaml [--set train.lr=1e-3 ...] [--check]

See docs/training.md for the config keys, resume, DDP/FSDP, SLURM and torchrun.
"""

from __future__ import annotations

import sys

from genomod.cli.main import main as genomod_main


def main(argv: list[str] | None = None) -> int:
    """``genomod [--debug] train ARGS``; config errors exit 2 with a one-line message."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = ["--debug"] if "--debug" in args else []
    return genomod_main([*debug, "train", *(a for a in args if a != "--debug")])


if __name__ == "__main__":
    sys.exit(main())
