"""Prepare the model once, before any worker starts: resolve, load, check, compile.

First the prepared-model cache (`model/prepared.py`): a local model, or a registered version whose
download is in the cache, whose artifact has a sound entry there (and passes the trust policy) is
ready in milliseconds, with no child process and no scikit-learn. A registered version is asked of
the registry on every start, without MLflow where the store allows (diabetes_store.registry: one
SQLite query or one REST call), for the version an alias names and for what identifies its content:
a version number the registry gave again, to other files, never finds the old download. A version
not downloaded yet is fetched by the supervisor itself where the store allows (the embedded
store's folder, a tracking server's artifact proxy: milliseconds for the worked example), so a first
start from the registry goes the way of a local folder's, 0.4 s instead of 5.2 s. Otherwise a
short-lived child process (`python -m diabetes_service.model.resolution`) turns the URI into a
local folder or file (through the store's REST client, or MLflow, whose import alone takes seconds
and a lot of memory), loads the model, scores probe rows with it, and compiles a linear model (or a
typed pipeline of encoders and a linear model: compile/encoded.py) to numpy arrays. So the
supervisor never imports MLflow or scikit-learn, a model that cannot be served stops the service
before it listens (with the child's whole message, on one line), and workers serving a compiled
model never import scikit-learn (nor pandas) either; a typed model that does not compile says why,
once, in the supervisor's log. Downloads go to the store's cache
(diabetes_store.cache), keyed by the version's content and renamed into place whole, so an
interrupted download is never used. The child keeps a compiled model's prepared form in the cache
for the next start.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from diabetes_service.errors import ModelLoadError
from diabetes_service.model import prepared
from diabetes_service.model.trust import TrustPolicy, admits
from diabetes_store.errors import StoreError, Unsupported
from diabetes_store.identity import VersionIdentity
from diabetes_store.uris import in_store, parse_registered

log = logging.getLogger("diabetes_service.model")


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
    # A registered version's content (diabetes_store.identity digest): what --follow compares, since a
    # version number may be given again to another model.
    content: str | None = None
    # Why a model with typed columns has no compiled form (compile/encoded.py): its workers import
    # pandas and scikit-learn, and every start prepares it again. The supervisor logs it (report).
    uncompiled: str | None = None


def needs_mlflow(uri: str) -> bool:
    """Whether `uri` names something in a tracking store (models:/, runs:/), not a local file or folder."""
    return in_store(uri)


def announce(resolved: ResolvedModel, path: Path) -> None:
    """Tell the workers what to load: written whole, then renamed, so never read half-written."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(resolved.__dict__))
    os.replace(partial, path)


def challenger_announcement(prepared_file: str | Path) -> Path:
    """Where the supervisor announces a safe rollout's challenger, beside the model's announcement."""
    return Path(prepared_file).with_name("prepared-challenger.json")


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

    A local model, or a registered version whose content (as the registry names it now) was
    downloaded here before or is fetched now without MLflow (locate), is found without MLflow: with
    a sound cache entry for its artifact, which the trust policy accepts, nothing else runs;
    otherwise the child prepares the local copy. A version whose files only MLflow's client fetches
    goes to the child pinned to the version the registry named, and a URI the registry cannot be
    asked about directly goes to the child as it is.
    """
    located, child_uri = locate(uri, tracking_uri)
    if located is None:
        return Plan(None, child_uri)
    key = prepared.key_of(located.path)
    ready = from_prepared(located, key, policy)
    if ready is not None:
        return Plan(ready, located.path)
    digest = None if key is None else key.artifact_sha256
    return Plan(None, located.path, (located.name, located.version), located, digest)


def from_prepared(
    resolved: ResolvedModel, key: prepared.PreparedKey | None, policy: TrustPolicy
) -> ResolvedModel | None:
    """`resolved` ready from a sound entry of its artifact in the prepared-model cache, if the trust
    policy admits what the entry recorded of the artifact (nothing is loaded); else None."""
    entry = None if key is None else prepared.lookup(key)
    if key is None or entry is None:
        return None
    meta = json.loads((entry / "linear.json").read_text())
    if not admits(meta, key.artifact_sha256, policy):
        return None  # any doubt: the child decides, loading the artifact under the policy
    features = tuple(feature["name"] for feature in meta["features"])
    return replace(resolved, compiled=str(entry), features=features, sha256=key.artifact_sha256, from_cache=True)


def report(uri: str, resolved: ResolvedModel) -> None:
    how = "from the prepared-model cache" if resolved.from_cache else "prepared"
    log.info("model %s: %s%s", uri, how, f" (artifact sha256 {resolved.sha256})" if resolved.sha256 else "")
    if resolved.uncompiled:
        log.warning(
            "model %s: served by scikit-learn itself (each worker imports pandas and scikit-learn, and every "
            "start prepares it again): %s",
            uri,
            resolved.uncompiled,
        )


def locate(uri: str, tracking_uri: str | None) -> tuple[ResolvedModel | None, str]:
    """The model's local copy when it is known without MLflow (else None), and what the child prepares.

    A `models:/` URI is asked of the registry directly (diabetes_store.registry); the content it
    names now is looked for in the download cache, so a renumbered version never finds old files,
    and fetched into it here when the store serves its files without MLflow.
    """
    if not needs_mlflow(uri):
        local = local_model(uri)
        return local, local.path
    ref = parse_registered(uri)
    if ref is None:
        return None, uri  # runs:/ and friends: the child downloads them
    from diabetes_store.cache import version_folder
    from diabetes_store.registry import quick_download, quick_lookup
    from diabetes_store.tracking_uri import resolve_tracking_uri

    tracking = resolve_tracking_uri(tracking_uri)
    identity = quick_lookup(tracking, ref)
    if identity is None:
        return None, uri  # not asked here: the child asks through MLflow, in its words
    folder = version_folder(tracking, identity)
    # Not downloaded yet: fetched here without MLflow where the store allows (the embedded store's
    # folder, a tracking server's artifact proxy), while the workers import; else by the child.
    if not quick_download(tracking, identity, folder):
        return None, ref.at(identity.version)
    located = ResolvedModel(str(folder), ref.name, identity.version, content=identity.digest(tracking))
    return located, ref.at(identity.version)


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
    """What the preparation child printed: the prepared model, or its whole complaint, on one line.

    Raises Unchanged when the URI resolved to a version the caller skips.
    """
    printed = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    if returncode != 0:
        # The child prints its message whole (main()); a child that died before it could (an import
        # failed, a signal) leaves its last line of standard error, e.g. a traceback's last line.
        message = printed.get("error")
        if not message:
            lines = [line for line in stderr.strip().splitlines() if line.strip()]
            message = lines[-1] if lines else f"resolving {uri} failed"
        error = ModelLoadError(message)
        error.version = printed.get("failed_version")
        error.content = printed.get("failed_content")
        raise error
    if "unchanged" in printed:
        raise Unchanged(printed["unchanged"])
    return ResolvedModel(**printed)


def _download(uri: str, target: Path) -> str:
    """`uri`'s files into `target` through MLflow's client, when not there already."""
    if target.is_dir():
        return str(target)
    import mlflow.artifacts

    from diabetes_store.cache import install

    # MLflow puts the files one folder down in the folder it is given: that folder is renamed into place.
    install(target, lambda staging: Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging))))
    return str(target)


class Unchanged(Exception):
    """The URI resolves to a version the caller already has (or refused): nothing to prepare."""


def resolve_registry(uri: str, tracking_uri: str, skip: frozenset[str] = frozenset()) -> ResolvedModel:
    """A `models:/` or `runs:/` URI pinned to its version and downloaded into the cache: the one
    resolver, for serve, --follow and deploy. Raises Unchanged for a version in `skip`, and
    ModelLoadError with the store's own words when the store refuses.

    The download is kept under the identity of the version's content (diabetes_store.identity), as
    the registry records it now. A tracking server is asked over its REST API
    (diabetes_store.registry_rest: no MLflow import, so the serving image can follow an alias); any
    other store, or artifacts the server does not proxy, through MLflow's client.
    """
    try:
        return _resolve_registry(uri, tracking_uri, skip)
    except StoreError as exc:
        raise ModelLoadError(str(exc)) from None


def _resolve_registry(uri: str, tracking_uri: str, skip: frozenset[str]) -> ResolvedModel:
    from diabetes_store.cache import install, uri_folder, version_folder
    from diabetes_store.registry_rest import RegistryClient, applies

    ref = parse_registered(uri)
    if ref is not None:
        ref.check()
    if ref is not None and applies(tracking_uri):
        server = RegistryClient(tracking_uri)
        identity = server.find_version(ref)
        _skip_unchanged(identity, tracking_uri, skip)
        target = version_folder(tracking_uri, identity)
        try:
            if not target.is_dir():
                install(target, lambda staging: server.download(identity, staging))
        except Unsupported:
            _download(ref.at(identity.version), target)
        return ResolvedModel(str(target), ref.name, identity.version, content=identity.digest(tracking_uri))
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if ref is None:  # runs:/ and friends: no registry version to pin; a run's files are named by its id
        return ResolvedModel(_download(uri, uri_folder(tracking_uri, uri)), uri.rstrip("/").rsplit("/", 1)[-1], "run")
    if ref.alias:
        found = client.get_model_version_by_alias(ref.name, ref.alias)
    elif ref.version == "latest":
        versions = client.search_model_versions(f"name='{ref.name}'")
        if not versions:
            raise StoreError(f"registered model {ref.name!r} has no versions")
        found = max(versions, key=lambda v: int(v.version))
    else:
        found = client.get_model_version(ref.name, str(ref.version))
    identity = VersionIdentity.from_record(
        {
            "name": found.name,
            "version": found.version,
            "run_id": found.run_id,
            "source": found.source,
            "creation_timestamp": found.creation_timestamp,
        }
    )
    _skip_unchanged(identity, tracking_uri, skip)
    target = version_folder(tracking_uri, identity)
    folder = _download(ref.at(identity.version), target)
    return ResolvedModel(folder, ref.name, identity.version, content=identity.digest(tracking_uri))


def _skip_unchanged(identity: VersionIdentity, tracking_uri: str, skip: frozenset[str]) -> None:
    """Unchanged when the caller has (or refused) this content: `skip` names contents (digests), or
    bare version numbers where the caller knows no content."""
    if identity.digest(tracking_uri) in skip or identity.version in skip:
        raise Unchanged(identity.version)


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
    from diabetes_service.model.compile import encoded, linear
    from diabetes_service.model.loading import load_model, model_file
    from diabetes_service.model.probes import probe_input

    key = prepared.key_of(resolved.path)
    ready = from_prepared(resolved, key, policy)
    if ready is not None:  # prepared before (an alias now naming a version seen before)
        return ready
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
    if isinstance(probe, np.ndarray):
        compiled: Any = linear.compile_verified(loaded.estimator, probe)
        save = linear.save
    elif not encoded.applies(loaded):  # doubles the model selects by name: scikit-learn serves it, as before
        return resolved
    else:  # typed columns: a pipeline of encoders and a linear model compiles to its arithmetic
        try:
            compiled = encoded.compile_loaded(loaded)
        except encoded.Uncovered as exc:
            return replace(resolved, uncompiled=str(exc))
        save = encoded.save
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
    entry = None if key is None else prepared.store(key, lambda folder: save(compiled, folder, meta))
    if entry is None:  # no artifact digest, or the cache is not writable: a copy for this start only
        save(compiled, compile_to, meta)
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
        # Whole, on one line (a warm-up's ValueError from scikit-learn spans several): the user reads
        # all of it, and which version failed, so that a follower does not retry it.
        return _fail(" ".join(str(exc).split()), resolved)
    except Exception as exc:
        # Another library's words: bounded, since some carry a whole HTTP answer's body.
        message = " ".join(str(exc).split())[:400]
        return _fail(f"cannot resolve {uri} on {tracking_uri}: {type(exc).__name__}: {message}")
    print(json.dumps(resolved.__dict__))
    return 0


def _fail(message: str, failed: ResolvedModel | None = None) -> int:
    """Print the failure for preparation_outcome (standard output, as JSON) and a human (standard error)."""
    version, content = (None, None) if failed is None else (failed.version, failed.content)
    print(json.dumps({"error": message, "failed_version": version, "failed_content": content}))
    print(message, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
