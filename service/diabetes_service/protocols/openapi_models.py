"""The served model's features as pydantic types, for the API description.

Requests are validated by the protocols' wire models (any row width, any key), then by the core
against the model's features. The API description shows those same wire models narrowed to the
served model: these types stand in for their generic rows, so that every feature appears as a
property with its name and type, and every row holds exactly as many values as the model has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    Strict,
    StrictBool,
    StrictStr,
    Tag,
    create_model,
)

from diabetes_client.schema import FeatureValue, InputDataSplit, ScoringParams, TypedValue, _row_kind
from diabetes_service.model.loading import Feature
from diabetes_service.scoring.core import ScoringCore

# MLflow column types to JSON Schema formats.
_FORMATS = {"double": "double", "float": "float", "long": "int64", "integer": "int32"}


@dataclass(frozen=True)
class FeatureModels:
    row_values: type[RootModel[Any]]  # RowValues: one row as a list in feature order
    keyed_row: type[BaseModel]  # Row: one row as an object keyed by feature name
    row: Any  # either of the two
    columns: Any  # a list of feature names (a table's header)
    column_table: type[BaseModel]  # Columns: one list of values per feature
    methods: Any  # the served model's methods, as a Literal
    params: type[BaseModel]  # ScoringParams: `params` of Azure ML v2 and MLflow bodies
    rows: Any  # a list of rows, at least one and at most the row limit
    split: type[BaseModel]  # InputDataSplit: a table in pandas' "split" layout
    values: tuple[Any, ...]  # each feature's value type (its JSON type, enum, nullability), in order

    @property
    def models(self) -> list[type[BaseModel]]:
        return [self.row_values, self.keyed_row, self.column_table, self.params, self.split]

    @classmethod
    def of(cls, core: ScoringCore) -> FeatureModels:
        names = list(core.feature_names)
        values = [_value(feature, core.categories.get(feature.name)) for feature in core.features]
        any_value = TypedValue if core.typed else FeatureValue
        example = core.example_rows[0] if core.example_rows else None
        row_values = type(
            "RowValues",
            (
                RootModel[
                    Annotated[
                        list[any_value],  # type: ignore[valid-type]
                        Field(
                            min_length=len(names),
                            max_length=len(names),
                            description=f"One row as {len(names)} numbers in this order: {', '.join(names)}.",
                        ),
                    ]
                ],
            ),
            {},
        )
        keyed_row = create_model(
            "Row",
            __config__=ConfigDict(
                extra="forbid",
                json_schema_extra={"description": "One row keyed by feature name."}
                if example is None
                else {
                    "description": "One row keyed by feature name.",
                    "example": dict(zip(names, example, strict=True)),
                },
            ),
            **{f"f{i}": (value, Field(alias=name)) for i, (name, value) in enumerate(zip(names, values, strict=True))},
        )
        column_table = create_model(
            "Columns",
            __config__=ConfigDict(
                extra="forbid",
                json_schema_extra={
                    "description": "One list of values per feature, all of the same length (one per row); "
                    "described here with one row, since a schema cannot require equal lengths."
                },
            ),
            **{
                f"f{i}": (list[value], Field(alias=name, min_length=1, max_length=1))  # type: ignore[valid-type]
                for i, (name, value) in enumerate(zip(names, values, strict=True))
            },
        )
        row = Annotated[
            Annotated[row_values, Tag("list")] | Annotated[keyed_row, Tag("dict")],
            Discriminator(_row_kind),
        ]
        # Every feature once, in any order: n distinct names out of n.
        columns = Annotated[
            list[Literal[tuple(names)]],  # type: ignore[misc]
            Field(min_length=len(names), max_length=len(names), json_schema_extra={"uniqueItems": True}),
        ]
        methods = Literal[core.methods]  # type: ignore[valid-type]
        params = create_model(
            "ScoringParams",
            __base__=ScoringParams,
            __doc__=ScoringParams.__doc__,
            method=(methods | None, Field(default=None, description=f"Left out: {core.pyfunc_method}.")),
        )
        rows = Annotated[
            list[row],  # type: ignore[valid-type]
            Field(min_length=1, max_length=core.max_rows, description="One entry per row to score."),
        ]
        split = create_model(
            "InputDataSplit",
            __base__=InputDataSplit,
            __doc__=InputDataSplit.__doc__,
            columns=(
                columns | None,
                Field(default=None, description=InputDataSplit.model_fields["columns"].description),
            ),
            data=(Annotated[list[row_values], Field(min_length=1, max_length=core.max_rows)], ...),  # type: ignore[valid-type]
        )
        return cls(row_values, keyed_row, row, columns, column_table, methods, params, rows, split, tuple(values))


def _value(feature: Feature, categories: list[str] | None) -> Any:
    """One feature's JSON type: its MLflow type's (string, integer, boolean, date-time, number), its
    categories as an enum where the model's encoder knows them, and null where it is optional."""
    fmt = _FORMATS.get(feature.type)
    value: Any
    if feature.type in ("long", "integer"):
        value = Annotated[int, Strict(), Field(json_schema_extra={"format": fmt})]
    elif feature.type == "boolean":
        value = StrictBool
    elif feature.type == "string" and categories:
        value = Literal[tuple(categories)]  # type: ignore[misc]
    elif feature.type in ("string", "binary"):
        value = StrictStr
    elif feature.type == "datetime":
        value = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
    else:
        value = Annotated[FeatureValue, Field(json_schema_extra={"format": fmt})] if fmt else FeatureValue
    return value | None if feature.optional else value
