"""The one exception a subcommand raises to stop with a one-line reason."""

from __future__ import annotations


class CommandError(Exception):
    """A failure to report as one line on standard error, with a non-zero exit status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        # Keep the contract's "one line": collapse anything multi-line a library handed us.
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code
