"""`diabetes score`: score a file of rows against a running service, one result per line.

For quick checks from a shell; it needs only the client (requests and pydantic). `--url` defaults to
the service `make run` starts, and the project's own sample file (`{"features", "rows"}`,
loadtests/diabetes_loadtest/example_test_rows.json) is read as it is.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from typing import Any

from diabetes_cli.errors import CommandError

DEFAULT_URL = "http://127.0.0.1:8080"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score a CSV or JSON file of rows against a running service",
        description="Send the rows of FILE to the scoring service at --url and print one result per line "
        "(a number for predict, a JSON list of class probabilities for predict_proba). FILE is a CSV with a "
        "header naming the features (or no header: values in feature order), or JSON: a list of rows "
        '(lists of numbers or feature-keyed objects), {"data": [...]} or {"features": [...], "rows": [...]} '
        '(the project\'s example_test_rows.json). "-" reads standard input.',
    )
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help=f"the service root or a scoring URI ending in /score (Azure ML) (default: {DEFAULT_URL}, "
        "where `make run` serves)",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("DIABETES_API_KEY"),
        help="API key, sent as a Bearer token (default: $DIABETES_API_KEY)",
    )
    parser.add_argument(
        "--method",
        choices=("predict", "predict_proba"),
        help="left out: the service's choice (predict_proba where the model has it, else predict)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each answer (default: 60)")
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="retries on connection errors and 429/502/503/504, with backoff (default: 3)",
    )
    parser.add_argument("file", metavar="FILE", help='CSV or JSON rows, or "-" for standard input')
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diabetes_client import Client, ScoringError

    rows, method = read_rows(args.file)
    try:
        client = Client(args.url, api_key=args.key or None, timeout=(5.0, args.timeout), retries=args.retries)
        with client:
            results = client.score(rows, method=args.method or method)
    except ScoringError as exc:
        raise CommandError(str(exc)) from None
    except ValueError as exc:  # a URL that is not http(s)
        raise CommandError(str(exc)) from None
    out = sys.stdout
    try:
        for result in results:
            out.write(json.dumps(result) + "\n")
        out.flush()
    except BrokenPipeError:
        # The reader left (`diabetes score rows.csv | head -1`): stop quietly, as a shell tool does, instead
        # of a traceback. stdout is pointed at /dev/null so that the interpreter's own final flush cannot
        # raise again; 141 is what a shell reports for a writer ended by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


def read_rows(path: str) -> tuple[list[Any], Any]:
    """The rows of a CSV or JSON file (and the ``method`` a ``{"data": ..., "method": ...}`` body names)."""
    text = _read_text(path)
    name = "standard input" if path == "-" else path
    if text.lstrip().startswith(("[", "{")):
        return _json_rows(text, name)
    return _csv_rows(text, name), None


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return handle.read()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text") from None


def _json_rows(text: str, name: str) -> tuple[list[Any], Any]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{name} is not valid JSON: {exc}") from None
    method = None
    if isinstance(document, dict):
        if "data" in document:
            method = document.get("method")
            document = document["data"]
        elif "rows" in document:
            document = _sample_rows(document, name)
        else:
            raise CommandError(f'{name}: a JSON object must hold the rows in "data" (or "rows", with "features")')
    if not isinstance(document, list):
        raise CommandError(f"{name}: the rows must be a JSON list")
    return document, method


def _sample_rows(document: dict[str, Any], name: str) -> Any:
    """The rows of a `{"features": [...], "rows": [[...], ...]}` file, keyed by the features it names."""
    rows, features = document["rows"], document.get("features")
    if features is None or not isinstance(rows, list):
        return rows
    if not isinstance(features, list) or not all(isinstance(feature, str) for feature in features):
        raise CommandError(f'{name}: "features" must be a list of feature names')
    keyed = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, list) or len(row) != len(features):
            raise CommandError(f'{name} row {number}: expected a list of {len(features)} values, one per "features"')
        keyed.append(dict(zip(features, row, strict=True)))
    return keyed


def _csv_rows(text: str, name: str) -> list[Any]:
    records = [record for record in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in record)]
    if not records:
        raise CommandError(f"{name} holds no rows")
    first = records[0]
    header = None if all(_is_number(cell) for cell in first) else [cell.strip() for cell in first]
    body = records if header is None else records[1:]
    if not body:
        raise CommandError(f"{name} holds a header but no rows")
    rows: list[Any] = []
    for number, record in enumerate(body, start=1):
        values = [_number(cell, name, number, column) for column, cell in enumerate(record, start=1)]
        if header is None:
            rows.append(values)
        elif len(values) != len(header):
            raise CommandError(f"{name} row {number}: {len(values)} values under a header of {len(header)}")
        else:
            rows.append(dict(zip(header, values, strict=True)))
    return rows


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _number(cell: str, name: str, line: int, column: int) -> float:
    try:
        return float(cell)
    except ValueError:
        raise CommandError(f"{name} row {line}, column {column}: not a number") from None
