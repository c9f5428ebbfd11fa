"""Prepare the model once, before any worker starts: resolve, load, check, compile.

First the prepared-model cache (`model/prepared.py`): a local model, or a pinned registry version
downloaded before, whose artifact has a sound entry there (and passes the trust policy) is ready in
milliseconds, with no child process, no registry call and no scikit-learn. Otherwise a short-lived
child process (`python -m diabetes_service.model.resolution`) turns the URI into a local
folder or file (`models:/` and `runs:/` URIs through MLflow, whose import alone takes seconds and
a lot of memory), loads the model, scores probe rows with it, and compiles a linear model to
numpy arrays. So the supervisor never imports MLflow or scikit-learn, a model that cannot be
served stops the service before it listens, and workers serving a linear model never import
scikit-learn either. Downloads go to a cache keyed by the registered version, through a temporary
folder renamed into place, so an interrupted download is never used. The child keeps a compiled
model's prepared form in the cache for the next start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from diabetes_service.errors import ModelLoadError
from diabetes_service.model import prepared
from diabetes_service.model.trust import TrustPolicy, trusted_skops_types

log = logging.getLogger("diabetes_service.model")

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))/?$")


@dataclass(frozen=True)
class ResolvedModel:
    path: str
    name: str
    version: str
    compiled: str | None = None  # folder of the compiled linear model, when there is one
    features: tuple[str, ...] | list[str] = ()  # the model's input columns, in order
    sha256: str | None = None  # of the artifact file (trust.py)
    generation: int = 0  # bumped by the supervisor each time it announces a new version (follow.py)
    from_cache: bool = False  # the prepared form came from the cache: nothing was loaded
    provisional: bool = False  # read from the artifact's arrays, not yet verified (model/provisional.py)


def needs_mlflow(uri: str) -> bool:
    return uri.startswith(MLFLOW_SCHEMES)


def announce(resolved: ResolvedModel, path: Path) -> None:
    """Tell the workers what to load: written whole, then renamed, so never read half-written."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(resolved.__dict__))
    os.replace(partial, path)


def await_announcement(path: Path, give_up: Callable[[], bool]) -> ResolvedModel | None:
    """The prepared model, once the supervisor has announced it; None if `give_up()` first."""
    parent = os.getppid()
    while not path.exists():
        if give_up() or os.getppid() != parent:
            return None
        time.sleep(0.002)  # a start from the cache announces within ~50 ms of the fork: each wait counts
    return ResolvedModel(**json.loads(path.read_text()))


def local_model(uri: str) -> ResolvedModel:
    path = Path(uri).expanduser().resolve()
    if not path.exists():
        raise ModelLoadError(f"no model at {uri}")
    return ResolvedModel(str(path), path.stem if path.is_file() else path.name, "local")


@dataclass(frozen=True)
class Plan:
    """How the model gets ready: already prepared (`ready`), or by the child on `child_uri`."""

    ready: ResolvedModel | None
    child_uri: str
    identity: tuple[str, str] | None = None  # name and version to report when the child gets a local copy
    located: ResolvedModel | None = None  # the local copy the child prepares, when known without it
    sha256: str | None = None  # of its artifact file


def plan(uri: str, tracking_uri: str | None, policy: TrustPolicy) -> Plan:
    """From the prepared-model cache when it can; else what the preparation child should prepare.

    A local model, or a pinned `models:/NAME/N` already downloaded here, is found without MLflow:
    with a sound cache entry for its artifact, which the trust policy accepts, nothing else runs;
    otherwise the child prepares the local copy (never asking the registry). An alias is asked of
    the registry on every start, directly where the store allows (model/registry.py), else through
    the child; `latest` and a version never downloaded go to the child too.
    """
    pinned = uri
    located = locate_offline(uri, tracking_uri)
    if located is None:
        pinned = _pin_alias(uri, tracking_uri)
        located = locate_offline(pinned, tracking_uri)
    if located is None:
        return Plan(None, pinned)
    key = prepared.key_of(located.path)
    entry = prepared.lookup(key) if key is not None else None
    if key is not None and entry is not None:
        meta = json.loads((entry / "linear.json").read_text())
        if _trusted(meta, key.artifact_sha256, policy):
            features = tuple(feature["name"] for feature in meta["features"])
            ready = replace(
                located, compiled=str(entry), features=features, sha256=key.artifact_sha256, from_cache=True
            )
            return Plan(ready, located.path)
    digest = None if key is None else key.artifact_sha256
    return Plan(None, located.path, (located.name, located.version), located, digest)


def _trusted(meta: dict, digest: str, policy: TrustPolicy) -> bool:
    """Whether `policy` would have loaded the artifact this entry was prepared from (trust.py's rules,
    from what the entry recorded: nothing is loaded). Any doubt: False, and the child decides."""
    if policy.sha256 is not None and digest != policy.sha256.lower():
        return False
    if meta.get("artifact_format") == "pickle":
        return policy.sha256 is not None or policy.allow_pickle
    if meta.get("artifact_format") == "skops":
        try:
            trusted_skops_types(meta.get("skops_types", []), policy)
        except ModelLoadError:
            return False
        return True
    return False


def report(uri: str, resolved: ResolvedModel) -> None:
    how = "from the prepared-model cache" if resolved.from_cache else "prepared"
    log.info("model %s: %s%s", uri, how, f" (artifact sha256 {resolved.sha256})" if resolved.sha256 else "")


def locate_offline(uri: str, tracking_uri: str | None) -> ResolvedModel | None:
    """The model's local folder when no registry call is needed to know it; None otherwise."""
    if not needs_mlflow(uri):
        return local_model(uri)
    match = _REGISTERED.match(uri)
    if not match or not (match["version"] or "").isdigit():
        return None  # an alias or `latest` may point elsewhere since the last start: ask
    from diabetes_store.tracking_uri import resolve_tracking_uri

    name, version = match["name"], match["version"]
    folder = _cache_entry(resolve_tracking_uri(tracking_uri), f"models:/{name}/{version}")
    return ResolvedModel(str(folder), name, version) if folder.is_dir() else None


def _pin_alias(uri: str, tracking_uri: str | None) -> str:
    """`models:/NAME/N` for `models:/NAME@ALIAS` when the registry answers quickly; else `uri`."""
    match = _REGISTERED.match(uri)
    if not match or not match["alias"]:
        return uri
    from diabetes_service.model.registry import alias_version
    from diabetes_store.tracking_uri import resolve_tracking_uri

    version = alias_version(resolve_tracking_uri(tracking_uri), match["name"], match["alias"])
    return uri if version is None else f"models:/{match['name']}/{version}"


def preparation_command(
    uri: str,
    tracking_uri: str | None,
    compile_to: Path,
    policy: TrustPolicy,
    skip: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The child process that prepares `uri` (unless it resolves to a version in `skip`), and its
    environment (ours, plus `env`)."""
    from diabetes_store.tracking_uri import resolve_tracking_uri

    env = {
        **os.environ,
        **(env or {}),
        # Fail in seconds, not minutes, when the tracking server is unreachable.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "10"),
    }
    cmd = [
        sys.executable,
        "-m",
        "diabetes_service.model.resolution",
        uri,
        resolve_tracking_uri(tracking_uri),
        str(compile_to),
        json.dumps(asdict(policy)),
        *skip,
    ]
    return cmd, env


def preparation_outcome(uri: str, returncode: int, stdout: str, stderr: str) -> ResolvedModel:
    """What the preparation child printed: the prepared model, or its last line of complaint.

    Raises Unchanged when the URI resolved to a version the caller skips.
    """
    printed = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    if returncode != 0:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        error = ModelLoadError(lines[-1] if lines else f"resolving {uri} failed")
        error.version = printed.get("failed_version")
        raise error
    if "unchanged" in printed:
        raise Unchanged(printed["unchanged"])
    return ResolvedModel(**printed)


def _cache_root() -> Path:
    base = os.environ.get("DIABETES_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(tempfile.gettempdir(), "diabetes-cache"), "models"
    )
    return Path(base)


def _cache_entry(tracking_uri: str, key: str) -> Path:
    return _cache_root() / hashlib.sha256(f"{tracking_uri}|{key}".encode()).hexdigest()[:24]


def _download(uri: str, tracking_uri: str, key: str) -> str:
    import mlflow.artifacts

    target = _cache_entry(tracking_uri, key)
    if target.is_dir():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging)))
        os.replace(local, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


class Unchanged(Exception):
    """The URI resolves to a version the caller already has (or refused): nothing to prepare."""


def resolve_registry(uri: str, tracking_uri: str, skip: frozenset[str] = frozenset()) -> ResolvedModel:
    """A `models:/` or `runs:/` URI pinned to its version and downloaded into the cache: the one
    resolver, for serve, --follow and deploy. Raises Unchanged for a version in `skip`.

    A tracking server is asked over its REST API (registry_rest.py: no MLflow import, so the
    serving image can follow an alias); any other store, or artifacts the server does not proxy,
    through MLflow's client.
    """
    # Here, in the preparation child: `requests` would cost the supervisor and every worker ~0.1 s.
    from diabetes_service.model.registry_rest import RegistryServer, Unsupported, is_rest_server

    match = _REGISTERED.match(uri)
    if match and is_rest_server(tracking_uri):
        name, alias, version = match["name"], match["alias"], match["version"]
        _check_version(uri, alias, version)
        server = RegistryServer(tracking_uri)
        version = server.version_for(name, alias, version)
        if version in skip:
            raise Unchanged(version)
        pinned = f"models:/{name}/{version}"
        target = _cache_entry(tracking_uri, pinned)
        try:
            if not target.is_dir():
                server.download(name, version, target)
            return ResolvedModel(str(target), name, version)
        except Unsupported:
            return ResolvedModel(_download(pinned, tracking_uri, pinned), name, version)
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if not match:  # runs:/ and friends: no registry version to pin
        return ResolvedModel(_download(uri, tracking_uri, uri), uri.rstrip("/").rsplit("/", 1)[-1], "run")
    name, alias, version = match["name"], match["alias"], match["version"]
    _check_version(uri, alias, version)
    if alias:
        version = client.get_model_version_by_alias(name, alias).version
    elif version == "latest":
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            raise ModelLoadError(f"registered model {name!r} has no versions")
        version = str(max(int(v.version) for v in versions))
    if str(version) in skip:
        raise Unchanged(str(version))
    pinned = f"models:/{name}/{version}"
    return ResolvedModel(_download(pinned, tracking_uri, pinned), name, str(version))


def _check_version(uri: str, alias: str | None, version: str | None) -> None:
    if not alias and version != "latest" and not (version or "").isdigit():
        raise ModelLoadError(f"{uri}: use models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME/latest")


class _RefuseImport:
    """A meta-path finder that makes one top-level package look not installed."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == self.package or name.startswith(self.package + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def _mentions_pandas(path: Path) -> bool:
    """Whether the pickled estimator may refer to pandas; True whenever it cannot tell."""
    import zipfile

    from diabetes_service.model.loading import model_file

    file = model_file(path)
    if file is None or not file.is_file():
        return True
    if zipfile.is_zipfile(file):  # skops: a zip of a JSON schema and arrays
        with zipfile.ZipFile(file) as archive:
            return any(b"pandas" in archive.read(name) for name in archive.namelist() if name.endswith(".json"))
    content = file.read_bytes()
    # Not a plain pickle (compressed by joblib?) cannot be read here: assume it may need pandas.
    return content[:1] != b"\x80" or b"pandas" in content


def _check_and_compile(resolved: ResolvedModel, compile_to: Path, policy: TrustPolicy) -> ResolvedModel:
    import numpy as np

    from diabetes_client.schema import METHODS
    from diabetes_service.model.compile import linear
    from diabetes_service.model.loading import load_model, model_file
    from diabetes_service.model.probes import probe_input

    key = prepared.key_of(resolved.path)
    if key is not None:
        entry = prepared.lookup(key)
        if entry is not None:  # prepared before (an alias now naming a version seen before)
            meta = json.loads((entry / "linear.json").read_text())
            if _trusted(meta, key.artifact_sha256, policy):
                features = tuple(feature["name"] for feature in meta["features"])
                return replace(
                    resolved, compiled=str(entry), features=features, sha256=key.artifact_sha256, from_cache=True
                )
    # scikit-learn's testing helpers (which skops imports) load pytest when it is installed (a
    # development environment): ~0.1 s no model needs.
    sys.meta_path.insert(0, _RefuseImport("pytest"))
    if not _mentions_pandas(Path(resolved.path)):
        # scikit-learn imports pandas (and pyarrow) whenever installed, which costs this
        # preparation step about half a second; a model that never mentions pandas cannot need it.
        sys.meta_path.insert(0, _RefuseImport("pandas"))
    loaded = load_model(resolved.path, policy)
    # A model with typed columns is called with a DataFrame: pandas may be needed from here on.
    sys.meta_path[:] = [finder for finder in sys.meta_path if getattr(finder, "package", None) != "pandas"]
    try:
        probe = probe_input(loaded)
    except Exception as exc:
        raise ModelLoadError(f"the model cannot be checked before it serves: {type(exc).__name__}: {exc}") from exc
    for method in METHODS:
        if callable(getattr(loaded.estimator, method, None)):
            try:
                getattr(loaded.estimator, method)(probe)
            except Exception as exc:
                raise ModelLoadError(f"the model failed its warm-up {method}: {type(exc).__name__}: {exc}") from exc
    resolved = replace(resolved, features=tuple(f.name for f in loaded.features), sha256=loaded.sha256)
    if not isinstance(probe, np.ndarray):  # a DataFrame: only a float matrix compiles
        return resolved
    compiled = linear.compile_verified(loaded.estimator, probe)
    if compiled is None:
        return resolved
    from diabetes_service.model.pyfunc import read_pyfunc

    meta = {
        "features": [asdict(feature) for feature in loaded.features],
        "input_example": loaded.input_example,
        # What /invocations calls by default: kept, so that a start without the MLmodel file answers alike.
        "predict_fn": read_pyfunc(resolved.path).predict_fn,
        **_artifact_trust(model_file(Path(resolved.path))),
    }
    entry = None if key is None else prepared.store(key, lambda folder: linear.save(compiled, folder, meta))
    if entry is None:  # no artifact digest, or the cache is not writable: a copy for this start only
        linear.save(compiled, compile_to, meta)
    return replace(resolved, compiled=str(entry or compile_to))


def _artifact_trust(file: Path | None) -> dict:
    """What the trust policy looks at, recorded with the prepared form so that a start from the
    cache applies the same rules without loading anything."""
    import zipfile

    if file is None or not file.is_file():
        return {}
    if not zipfile.is_zipfile(file):
        return {"artifact_format": "pickle"}
    import skops.io

    return {"artifact_format": "skops", "skops_types": sorted(skops.io.get_untrusted_types(file=file))}


def main(argv: list[str]) -> int:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    uri, tracking_uri, compile_to, policy_json, *skip = argv  # skip: versions it has or refused (--follow)
    given = json.loads(policy_json)
    policy = TrustPolicy(
        given["allow_pickle"],
        given["sha256"],
        tuple(given["trusted_types"]),
        bool(given.get("allow_version_mismatch", False)),
    )
    resolved = None
    try:
        resolved = resolve_registry(uri, tracking_uri, frozenset(skip)) if needs_mlflow(uri) else local_model(uri)
        resolved = _check_and_compile(resolved, Path(compile_to), policy)
    except Unchanged as exc:
        print(json.dumps({"unchanged": str(exc)}))
        return 0
    except ModelLoadError as exc:
        if resolved is not None:  # which version failed, so that a follower does not retry it
            print(json.dumps({"failed_version": resolved.version}))
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:
        message = " ".join(str(exc).split())[:400]
        print(f"cannot resolve {uri} on {tracking_uri}: {type(exc).__name__}: {message}", file=sys.stderr)
        return 2
    print(json.dumps(resolved.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
