"""`models:/` URIs read once, for every caller: the quick lookup, the preparation child and deploy.

A registered model is named three ways: `models:/NAME/N` (a version), `models:/NAME@ALIAS` and
`models:/NAME/latest` (both may point elsewhere tomorrow). `runs:/` and `mlflow-artifacts:/` URIs
also live in the store but name no registered version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from diabetes_store.errors import StoreError

STORE_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))/?$")


def in_store(uri: str) -> bool:
    """Whether `uri` names something in a tracking store (else a local file or folder)."""
    return uri.startswith(STORE_SCHEMES)


@dataclass(frozen=True)
class RegisteredUri:
    """`models:/NAME/VERSION`, `models:/NAME@ALIAS` or `models:/NAME/latest`, split."""

    uri: str
    name: str
    alias: str | None
    version: str | None  # digits or "latest" once checked; None with an alias

    @property
    def pinned(self) -> bool:
        """Whether it names one version number (which a registry may still renumber: see identity.py)."""
        return self.alias is None and (self.version or "").isdigit()

    def check(self) -> RegisteredUri:
        """Itself; StoreError when the part after the name is neither a number, `latest` nor an alias."""
        if not self.alias and self.version != "latest" and not (self.version or "").isdigit():
            raise StoreError(f"{self.uri}: use models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME/latest")
        return self

    def at(self, version: str) -> str:
        """The URI of `version` of the same registered model."""
        return f"models:/{self.name}/{version}"


def parse_registered(uri: str) -> RegisteredUri | None:
    """The parts of a `models:/` URI; None for anything else (`runs:/`, a path, `models:/a/b/c`)."""
    match = _REGISTERED.match(uri)
    if match is None:
        return None
    return RegisteredUri(uri, match["name"], match["alias"], match["version"])
