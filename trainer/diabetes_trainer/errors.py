"""The trainer's one exception: a reason to stop, short enough for one line on standard error."""

from __future__ import annotations


class TrainerError(Exception):
    """Training or registering could not go on; the message names what and where, in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def short_reason(exc: BaseException, limit: int = 240) -> str:
    """A library's exception as one short line: its type and the first line of its message.

    SQLAlchemy and MLflow messages run over many lines (SQL text, links to docs); the first line
    says what went wrong, the rest belongs in a debug log.
    """
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    first = first if len(first) <= limit else first[: limit - 3] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
