"""Moving and removing a registered model's alias: a safe rollout's rollback and promotion.

The one write the service makes to the registry, made once per decision from the supervisor
(supervisor/rollout.py), in a short-lived child process (`python -m diabetes_store.aliases`), since
MLflow's client (its import alone takes seconds and a lot of memory) never runs in the supervisor or
a worker. MLflow's client, not our own REST or SQLite code: the embedded SQLite store is MLflow's
own schema, and its client is the one writer that keeps it consistent (and a tracking server's
REST API the same way).
"""

from __future__ import annotations

import sys


def change(tracking_uri: str, name: str, alias: str, version: str | None) -> None:
    """Point `alias` of `name` at `version`, or remove it (version None)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if version is None:
        client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, version)


def main(argv: list[str]) -> int:
    """`python -m diabetes_store.aliases TRACKING_URI NAME ALIAS [VERSION]`: no VERSION removes the alias."""
    tracking_uri, name, alias, *version = argv
    try:
        change(tracking_uri, name, alias, version[0] if version else None)
    except Exception as exc:  # one line for the supervisor's log
        print(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
