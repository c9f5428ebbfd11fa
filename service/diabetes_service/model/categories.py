"""The categories a model's encoders know, by input column: the API description shows them as an enum.

Read from a fitted scikit-learn Pipeline / ColumnTransformer whose encoders (OneHotEncoder,
OrdinalEncoder) take columns by name, at load time and never per request. A category not listed
is still scored: what happens to it is the encoder's `handle_unknown`.
"""

from __future__ import annotations

from typing import Any


def known_categories(estimator: Any) -> dict[str, list[str]]:
    """{column name: its string categories} for every encoder fed one named column directly."""
    kept = getattr(estimator, "known_categories", None)
    if isinstance(kept, dict):  # a compiled pipeline (compile/encoded.py): read off its encoders when compiled
        return {name: list(values) for name, values in kept.items()}
    found: dict[str, list[str]] = {}
    _walk(estimator, None, found)
    return found


def _walk(step: Any, columns: list[str] | None, found: dict[str, list[str]]) -> None:
    for _, inner in getattr(step, "steps", None) or []:  # a Pipeline: its steps see the same columns
        _walk(inner, columns, found)
        columns = None  # after the first step the columns are the step's output, not the inputs
    for _, inner, selected in getattr(step, "transformers_", None) or []:  # a ColumnTransformer
        if isinstance(selected, list | tuple) and all(isinstance(name, str) for name in selected):
            _walk(inner, list(selected), found)
    categories = getattr(step, "categories_", None)
    if categories is not None and columns is not None and len(categories) == len(columns):
        for name, values in zip(columns, categories, strict=True):
            labels = [value for value in list(values) if isinstance(value, str)]
            if labels and len(labels) == len(values):
                found.setdefault(name, labels)
