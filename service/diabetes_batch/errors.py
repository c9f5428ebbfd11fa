"""The one failure `diabetes batch` stops on: a one-line reason naming the file and the column.

A row that fails the model's checks is not one of these: it is set aside in `_rejected/` and the run
carries on. This is for what makes a whole file (or the job) unscorable: a missing input, an
unreadable file, a column the data lacks, a type the signature cannot take, an output folder that
holds another job's results.
"""

from __future__ import annotations


class BatchError(Exception):
    """A reason to stop, worded for one line of standard error."""
