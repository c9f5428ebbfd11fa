"""Entry point of the `diabetes` console script.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module imports its
heavy dependencies (MLflow, scikit-learn, Locust...) only inside its handler, so that
``diabetes --help`` and ``diabetes score`` start fast and work on a client-only install.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from diabetes_cli import batch, deploy, loadtest, monitor, score, serve, train
from diabetes_cli.errors import CommandError

SUBCOMMANDS = (train, serve, batch, monitor, deploy, score, loadtest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diabetes",
        description="Train, register, serve, deploy and load-test the diabetes scoring service.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CommandError as exc:
        # The contract: non-zero exit with a one-line reason on standard error.
        print(f"diabetes {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
