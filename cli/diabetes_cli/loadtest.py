"""`diabetes loadtest` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse

from diabetes_cli.errors import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("loadtest", help="not implemented yet")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise CommandError("not implemented yet")
