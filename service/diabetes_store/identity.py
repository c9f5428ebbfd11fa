"""What identifies a registered version's content: the key of its download in the cache.

A version number alone does not: recreate the store, or delete the registered model and register
it again, and MLflow numbers versions from 1 again, with other files. Keyed by name and number, the
cache served the old files for the new version 1 (235.11 where the new model gives 175.52, with no
warning). The registry's own record of a version names its content: the run that produced it, the
source its files were copied from and the millisecond it was created; a version registered again
differs in at least the last, and a store created again in the run id too. So the cache is keyed by
those, read from the registry on every resolve (one SQLite query or one REST call).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class VersionIdentity:
    name: str
    version: str
    run_id: str
    source: str
    created: str  # the registry's creation timestamp, milliseconds since the epoch

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> VersionIdentity:
        """From a model version as MLflow's REST API or its client's entity spells it (missing fields: empty)."""

        def text(key: str) -> str:
            value = record.get(key)
            return "" if value is None else str(value)

        created = text("creation_timestamp")
        return cls(
            name=text("name"),
            version=text("version"),
            run_id=text("run_id"),
            source=text("source"),
            # The REST API may spell an int64 as a string: "1700000000000" and 1700000000000 are one time.
            created=str(int(created)) if created.lstrip("-").isdigit() else created,
        )

    def digest(self, tracking_uri: str) -> str:
        """The cache key of this content as served by the store at `tracking_uri`."""
        fields = [tracking_uri, self.name, self.version, self.run_id, self.source, self.created]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:24]
