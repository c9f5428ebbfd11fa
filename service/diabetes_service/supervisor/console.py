"""What the service prints for a person at start-up: lines that fit a screen, and where to go next.

Issue 22 measured the console of a first `make run`: a 585-character `settings:` line, and nothing
saying the service was ready, how to try it or how to stop it. Every line here fits SCREEN_WIDTH
columns (a single value wider than that, such as a long model path, keeps a line of its own), and
the curl is split with a backslash so that it still pastes as one command.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

SCREEN_WIDTH = 80
_LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}  # a wildcard bind is reached on loopback


def wrapped(head: str, text: str, width: int = SCREEN_WIDTH) -> list[str]:
    """`text` (space-separated `name=value` pairs) wrapped to `width` columns, `head` on the first line."""
    return textwrap.wrap(
        text, width, initial_indent=head, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
    )


def next_steps(host: str, port: int, features: Sequence[str], *, keys: bool, grpc_port: int = 0) -> list[str]:
    """The lines printed once the service is ready: the API page, one curl, how to stop."""
    base = f"http://{_LOOPBACK_FOR.get(host, host)}:{port}"
    lines = [f"ready: try it at {base}/docs (the API page), or from a shell:"]
    lines.append(f"  curl {base}/score -H 'Content-Type: application/json' \\")
    if keys:
        lines.append("    -H 'Authorization: Bearer <key>' \\")
    row = ", ".join("0" for _ in features) or "..."
    lines.append(f"""    -d '{{"data": [[{row}]]}}'""")
    grpc = f" and gRPC on port {grpc_port}" if grpc_port else ""
    lines.append(f"stop: Ctrl+C (it serves in the foreground, HTTP on port {port}{grpc})")
    return lines
