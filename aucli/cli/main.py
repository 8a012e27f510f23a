"""The ``aucli`` entry point: a lazy Click group, so ``aucli --help`` never imports torch.

Commands are registered in ``COMMANDS`` as ``"name": "module:attribute"``; each module imports its
heavy dependencies inside the command body. Library errors (:class:`aucli.errors.AucliError`)
become one ``Error: ...`` line and a non-zero exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from aucli import __version__

#: name -> "module:attribute" of the click command. Only commands that work are listed here.
COMMANDS: dict[str, str] = {
    "info": "aucli.cli.info:info",
    "preprocess": "aucli.cli.preprocess:preprocess",
    "labels": "aucli.cli.labels:labels",
    "predict": "aucli.cli.predict:predict",
    "train": "aucli.cli.train:train",
    "eval": "aucli.cli.eval:eval_",
    "synth": "aucli.cli.synth:synth",
    "pretrain": "aucli.cli.pretrain:pretrain",
    "audit": "aucli.cli.audit:audit",
    "demo": "aucli.cli.demo:demo",
    "finetune-micro": "aucli.cli.finetune_micro:finetune_micro",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when they are run or asked for help."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[override]
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            import difflib

            name = args[0] if args else ""
            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            if close and not name.startswith("-"):
                raise click.UsageError(f"No such command {name!r}. Did you mean {close[0]!r}?") from None
            raise

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from aucli.errors import AucliError

        try:
            return super().invoke(ctx)
        except AucliError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted. Stored data is consistent; rerun the same command to resume.", err=True)
            sys.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="aucli")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Facial Action Unit annotation workflows on AUFormer.

    \b
    Examples:
      aucli info --backbone vit_base_patch16_224 --aus bp4d
      aucli COMMAND --help    (each command's options and examples)
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    # Never let a hub lookup wait on a network that is not there.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
