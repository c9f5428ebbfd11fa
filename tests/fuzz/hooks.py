"""Schemathesis hooks of tests/fuzz (loaded through SCHEMATHESIS_HOOKS=tests.fuzz.hooks)."""

from __future__ import annotations

import json

import schemathesis

# The only refusal of a schema-valid body: the model's answer for these values is not finite.
UNSCORABLE = "the model's output is not finite for this row"


@schemathesis.check
def valid_bodies_refused_only_when_unscorable(ctx, response, case) -> bool | None:
    """Narrows the 422 (400 on the MLflow and V2 routes, their protocols' status for bad input) that schemathesis.toml
    lets through for schema-valid requests to that one case."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (400, 422):
        return None
    try:
        body = json.loads(response.content)
        message = body.get("message") or body.get("error") or ""  # the V2 routes' error body says "error"
    except (ValueError, AttributeError):
        message = ""
    if UNSCORABLE not in message:
        raise AssertionError(
            f"a schema-valid request was refused with {response.status_code}: {message or response.content[:200]!r}"
        )
    return None
