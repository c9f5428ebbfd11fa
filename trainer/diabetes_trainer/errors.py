"""The trainer's one exception: a reason to stop, short enough for one line on standard error."""

from __future__ import annotations


class TrainerError(Exception):
    """Training or registering could not go on; the message names what and where, in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# Lines of library messages that say nothing about what went wrong.
NOISE_PREFIXES = ("(raised as a result of", "(Background on this error", "[SQL:", "[parameters:")


def short_reason(exc: BaseException, limit: int = 240) -> str:
    """A library's exception as one short line: its type and the first telling line of its message.

    SQLAlchemy and MLflow messages run over many lines (SQL text, parameters, links to docs);
    one line says what went wrong, the rest belongs in a debug log.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = [line for line in lines if not line.startswith(NOISE_PREFIXES)]
    first = (telling or lines or [""])[0]
    # An HTTP error's body (an HTML page, say) is not a reason.
    first = first.split(" Response body:", 1)[0]
    first = first if len(first) <= limit else first[: limit - 3] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
