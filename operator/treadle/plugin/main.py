"""Argument parsing and dispatch of `kubectl treadle`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lightkube import ApiError, Client, ConfigError, KubeConfig

from treadle.plugin import examples, flags, listing, logs, runs, syncjobs, ui, workflows
from treadle.plugin.output import Failure


def connect(args: argparse.Namespace) -> Client:
    config = KubeConfig.from_file(args.kubeconfig) if args.kubeconfig else KubeConfig.from_env()
    return Client(config.get(context_name=args.context), namespace=args.namespace)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kubectl treadle", description="Operate Treadle workflows and sync jobs."
    )
    flags.add_connection_flags(top, default=None)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    workflows.add_commands(commands)
    runs.add_commands(commands)
    syncjobs.add_commands(commands)
    listing.add_commands(commands)
    examples.add_commands(commands)
    logs.add_commands(commands)
    ui.add_commands(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        client = None if getattr(args, "offline", False) else connect(args)
        code: int = args.handler(client, args)
    except Failure as failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    except ConfigError as error:
        print(f"error: kubeconfig: {error}", file=sys.stderr)
        return 1
    except ApiError as error:
        print(f"error: {error.status.message}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
