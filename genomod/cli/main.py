"""``genomod`` entry point: a lazy click group, one-line errors (exit 2), tracebacks only with --debug."""

from __future__ import annotations

import importlib
import sys

import click

from genomod import __version__
from genomod.errors import GenomodError, Terminated, raise_on_sigterm

# name -> "module:attribute"; modules are imported only when their command runs (fast --help).
COMMANDS: dict[str, str] = {
    "info": "genomod.cli.info:info",
    "demo": "genomod.cli.info:demo",
    "score": "genomod.cli.score:score",
    "mutagenesis": "genomod.cli.score:mutagenesis",
    "embed": "genomod.cli.embed:embed",
    "calibrate": "genomod.cli.calibrate:calibrate",
    "eval": "genomod.cli.eval:eval_group",
    "train": "genomod.cli.train:train",
    "finetune": "genomod.cli.finetune:finetune",
    "convert": "genomod.cli.convert:convert",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._spec_available(name))

    @staticmethod
    def _spec_available(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not self._spec_available(name):
            return None
        module_name, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="genomod")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:  # --debug is read by main() itself (it decides on tracebacks)
    """genomod: DNA foundation models on long sequences (FASTA/VCF in, scores and embeddings out)."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; GenomodError becomes a one-line 'genomod: error: ...' message and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if argv is None:
        raise_on_sigterm()
    try:
        cli.main(args=args, prog_name="genomod", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("genomod: aborted", err=True)
        return 130
    except click.exceptions.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except GenomodError as exc:
        if debug:
            raise
        click.echo(f"genomod: error: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("genomod: interrupted", err=True)
        return 130
    except Terminated:
        click.echo("genomod: terminated (SIGTERM); no partial output was kept", err=True)
        return 143
    return 0


if __name__ == "__main__":
    sys.exit(main())
