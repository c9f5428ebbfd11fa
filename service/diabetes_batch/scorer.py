"""One Arrow batch through the scoring core: the rows it accepts scored, the others set aside with
the service's own message.

The core is the service's (scoring/core.py), with its compiled fast paths: a model whose signature
is all required doubles gets a float matrix straight from the Arrow columns, checked by the core for
shape and finiteness, and scored in one call; any other signature gets the core's typed `Table`,
checked value by value. Rows the core refuses are found without giving up the batch: rows that
surely fail (a null where one is required, NaN or infinity) are set aside first; if the core still
refuses the rest, the rows are checked in ever smaller parts down to the one row at fault. Each
refused row's message is what the service answers for that row sent alone (`/score`, rows as lists),
less the field prefix (`data[0][2]: `), which the rejected record replaces by the column's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from diabetes_batch.columns import float_column, json_values, null_or_nonfinite
from diabetes_service.model.columns import CHECKS, Table
from diabetes_service.scoring.core import ScoringCore, ScoringError

_COLUMN_OF_FIELD = re.compile(r"^data\[0\]\[(\d+)\]")
# A part of the batch the core refused is checked again in this many pieces, down to single rows.
PIECES = 8


@dataclass
class Scored:
    """What one batch gave: predictions for the rows at `rows`, and the rows refused."""

    rows: np.ndarray  # indices in the batch, ascending
    predictions: np.ndarray
    rejected_rows: list[int] = field(default_factory=list)
    rejected_columns: list[str | None] = field(default_factory=list)
    rejected_messages: list[str] = field(default_factory=list)


class BatchScorer:
    def __init__(self, core: ScoringCore, method: str | None) -> None:
        self.core = core
        # As the service chooses (an unknown method, one the model lacks: its own message).
        self.method = core.choose_method(method or core.pyfunc_method)
        self.features = core.features
        probe = core.matrix([list(row) for row in core.example_rows], "input example")
        self.example_output = core.predict(probe, self.method)
        self._types = self._output_types()

    # -- what the output holds ---------------------------------------------------------------------

    def output_names(self) -> list[str]:
        """`prediction`, or one column per class label (predict_proba, a multi-class decision_function)."""
        result = self.example_output
        if result.ndim == 1:
            return ["prediction"]
        classes = self.core.classes
        if classes is not None and len(classes) == result.shape[1]:
            return [str(label) for label in classes]
        return [f"prediction_{i}" for i in range(result.shape[1])]

    def output_types(self) -> list[pa.DataType]:
        return self._types

    def _output_types(self) -> list[pa.DataType]:
        result = self.example_output
        columns = [result] if result.ndim == 1 else [result[:, i] for i in range(result.shape[1])]
        return [pa.array(column.tolist() if column.dtype == object else column).type for column in columns]

    def output_arrays(self, predictions: np.ndarray) -> list[pa.Array]:
        columns = [predictions] if predictions.ndim == 1 else [predictions[:, i] for i in range(predictions.shape[1])]
        return [
            pa.array(column.tolist() if column.dtype == object else column, type=kind)
            for column, kind in zip(columns, self.output_types(), strict=True)
        ]

    # -- scoring -----------------------------------------------------------------------------------

    def score(self, batch: pa.RecordBatch) -> Scored:
        if self.core.typed:
            return self._score_typed(batch)
        return self._score_matrix(batch)

    def _score_matrix(self, batch: pa.RecordBatch) -> Scored:
        """All required doubles: one float matrix, the core's finiteness check, one call."""
        matrix = np.column_stack([float_column(batch.column(f.name)) for f in self.features])
        finite = np.isfinite(matrix).all(axis=1)
        refused: list[tuple[int, str | None, str]] = []
        if finite.all():
            rows = np.arange(batch.num_rows)
        else:
            rows = np.flatnonzero(finite)
            matrix = matrix[rows]
            for i in np.flatnonzero(~finite).tolist():
                refused.append((i, *self._refusal(self._row_values(batch, i))))
        if len(rows) == 0:
            return self._scored(rows, self.example_output[:0], refused)
        checked = self.core.checked(matrix, "data")
        kept, predictions = self._predict(checked, rows, refused)
        return self._scored(kept, predictions, refused)

    def _score_typed(self, batch: pa.RecordBatch) -> Scored:
        """Any other signature: the columns as JSON values, checked by the core into a Table."""
        columns = [json_values(batch.column(f.name), f) for f in self.features]
        surely_bad = np.zeros(batch.num_rows, dtype=bool)
        for feature in self.features:
            bad = null_or_nonfinite(batch.column(feature.name), feature)
            if bad is not None:
                surely_bad |= bad
        refused: list[tuple[int, str | None, str]] = []
        candidates: list[int] = []
        for i in range(batch.num_rows):
            if surely_bad[i]:
                column, message = self._refusal([values[i] for values in columns])
                if message is not None:
                    refused.append((i, column, message))
                    continue
            candidates.append(i)
        tables: list[tuple[list[int], Table]] = []
        if candidates:
            self._check_rows(columns, candidates, tables, refused)
        if not tables:
            return self._scored(np.arange(0), self.example_output[:0], refused)
        # The checked parts as one table again: one model call for the batch's good rows, as if the
        # refused ones had never been there (a frame's dtypes, hence some models' answers, depend on
        # the rows it holds together).
        rows = np.asarray([row for part, _ in tables for row in part])
        table = tables[0][1] if len(tables) == 1 else Table.concat([table for _, table in tables])
        kept, predictions = self._predict(table, rows, refused)
        return self._scored(kept, predictions, refused)

    def _check_rows(
        self,
        columns: list[list[Any]],
        rows: list[int],
        tables: list[tuple[list[int], Table]],
        refused: list[tuple[int, str | None, str]],
    ) -> None:
        """The core's check of `rows`; where it refuses, the same for smaller parts, down to the row at fault."""
        names = self.core.feature_names
        try:
            every = len(rows) == len(columns[0])
            pairs = zip(names, columns, strict=True)
            given = {name: (values if every else [values[i] for i in rows]) for name, values in pairs}
            table = self.core.column_matrix(given, "data")
        except ScoringError:
            if len(rows) == 1:
                column, message = self._refusal([values[rows[0]] for values in columns])
                refused.append((rows[0], column, message or "the service refuses this row"))
                return
            step = -(-len(rows) // PIECES)
            for start in range(0, len(rows), step):
                self._check_rows(columns, rows[start : start + step], tables, refused)
            return
        tables.append((rows, table))

    def _predict(
        self, given: Any, rows: np.ndarray, refused: list[tuple[int, str | None, str]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model's answers for checked rows; a part it cannot score (non-finite output, values
        out of its range) is split down to the rows at fault, which are refused with the core's words."""
        try:
            return rows, self.core.predict(given, self.method, "data")
        except ScoringError as exc:
            if len(rows) == 1:
                refused.append((int(rows[0]), None, exc.message))
                return rows[:0], self.example_output[:0]
        step = -(-len(rows) // PIECES)
        kept, outputs = [], []
        for start in range(0, len(rows), step):
            part_rows, part = self._predict(_part(given, start, start + step), rows[start : start + step], refused)
            kept.append(part_rows)
            outputs.append(part)
        return np.concatenate(kept), np.concatenate(outputs)

    def _row_values(self, batch: pa.RecordBatch, i: int) -> list[Any]:
        return [json_values(batch.column(f.name).slice(i, 1), f)[0] for f in self.features]

    def _refusal(self, values: list[Any]) -> tuple[str | None, str | None]:
        """What the service answers for this row alone: (the column, the message); (None, None) if it scores."""
        if not self.core.typed:
            # `/score` checks a double's values before the core's matrix does (the wire schema, in
            # the words of the core's value checks, CHECKS): "must be a number, not null" rather
            # than the matrix's "must be a finite number" for a null that numpy reads as NaN.
            for j, (column_type, value) in enumerate(zip(self.core.column_types, values, strict=True)):
                try:
                    CHECKS[column_type.type](value)
                except ValueError as exc:
                    return self.core.feature_names[j], str(exc)
        try:
            self.core.predict(self.core.matrix([values], "data"), self.method, "data")
        except ScoringError as exc:
            match = _COLUMN_OF_FIELD.match(exc.field or "")
            return (self.core.feature_names[int(match[1])] if match else None), exc.message
        return None, None

    def _scored(self, rows: np.ndarray, predictions: np.ndarray, refused: list[tuple[int, str | None, str]]) -> Scored:
        refused.sort()
        return Scored(
            rows,
            predictions,
            [r[0] for r in refused],
            [r[1] for r in refused],
            [r[2] for r in refused],
        )


def _part(given: Any, start: int, stop: int) -> Any:
    if isinstance(given, Table):
        return Table(tuple(column[start:stop] for column in given.columns), len(given.columns[0][start:stop]))
    return given[start:stop]
