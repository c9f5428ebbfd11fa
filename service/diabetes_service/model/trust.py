"""Which model artifacts the service agrees to load: a registry write must not become code execution.

- Pickle-based artifacts (a bare `model.pkl` or joblib file, MLflow's `pickle` and `cloudpickle`
  formats) run whatever code they hold when loaded: they load only with an explicit opt-in
  (`--allow-pickle`) or when the file's sha256 matches a pin (`--model-sha256`), which proves it is
  the artifact the operator reviewed.
- skops artifacts describe their objects instead of running code; the types they name must be on
  the service's own allow-list (scikit-learn, numpy, scipy) or named by the operator
  (`--trust-type`). The MLmodel file's `skops_trusted_types` is not taken: whoever wrote the
  artifact wrote that list too.
- A pin, when given, must match whatever the format.
The same rules judge a prepared form from the cache (`admits`), from what it recorded of the artifact
it was prepared from: the rules are stated once, here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from diabetes_service.errors import ModelLoadError

# Top-level packages whose types a skops artifact may name without the operator's word.
ALLOWED_PACKAGES = ("sklearn", "numpy", "scipy", "builtins", "collections")


@dataclass(frozen=True)
class TrustPolicy:
    allow_pickle: bool = False
    sha256: str | None = None  # hex digest of the artifact file
    trusted_types: tuple[str, ...] = ()
    # Load a model saved with another major scikit-learn version (versions.py).
    allow_version_mismatch: bool = False

    @classmethod
    def from_settings(cls, settings: object) -> TrustPolicy:
        return cls(
            allow_pickle=bool(getattr(settings, "allow_pickle", False)),
            sha256=getattr(settings, "model_sha256", None),
            trusted_types=tuple(getattr(settings, "trusted_types", ())),
            allow_version_mismatch=bool(getattr(settings, "allow_version_mismatch", False)),
        )


def sha256_of(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pin_matches(digest: str, policy: TrustPolicy) -> bool:
    """Whether an artifact with this sha256 passes the pin (always, with no pin)."""
    return policy.sha256 is None or digest == policy.sha256.lower()


def pickle_allowed(policy: TrustPolicy) -> bool:
    """Whether a pickle may load: pinned (the pin itself is checked by pin_matches) or explicitly allowed."""
    return policy.sha256 is not None or policy.allow_pickle


def check_pin(file: Path, policy: TrustPolicy) -> str:
    """The file's sha256; ModelLoadError when a pin is set and it differs."""
    digest = sha256_of(file)
    if not pin_matches(digest, policy):
        assert policy.sha256 is not None
        raise ModelLoadError(
            f"{file.name}: sha256 {digest} does not match the pinned --model-sha256 {policy.sha256.lower()}"
        )
    return digest


def check_pickle(file: Path, policy: TrustPolicy) -> None:
    """A pickle loads only when pinned (checked by check_pin) or explicitly allowed."""
    if not pickle_allowed(policy):
        raise ModelLoadError(
            f"{file.name} is a pickle, and loading a pickle runs whatever code it holds: pass --allow-pickle "
            "(DIABETES_ALLOW_PICKLE=true, spec model.allow_pickle) to trust it, or pin it with --model-sha256 "
            f"{sha256_of(file)}"
        )


def trusted_skops_types(untrusted: Iterable[str], policy: TrustPolicy) -> list[str]:
    """The types skops asks about that may load; ModelLoadError naming any other."""
    untrusted = list(untrusted)
    refused = [name for name in untrusted if name.split(".", 1)[0] not in ALLOWED_PACKAGES]
    refused = [name for name in refused if name not in policy.trusted_types]
    if refused:
        flags = " ".join(f"--trust-type {name}" for name in refused)
        raise ModelLoadError(
            f"the skops artifact names types outside the allow-list (scikit-learn, numpy, scipy): "
            f"{', '.join(refused)}; to load it anyway: {flags}"
        )
    return untrusted


def admits(recorded: dict, digest: str, policy: TrustPolicy) -> bool:
    """Whether `policy` would load the artifact a prepared form was made from, judged from what the
    form recorded of it (its format, skops' types) and its sha256: nothing is loaded. Any doubt
    (a format not recorded): False, and the artifact is loaded under the policy instead."""
    if not pin_matches(digest, policy):
        return False
    if recorded.get("artifact_format") == "pickle":
        return pickle_allowed(policy)
    if recorded.get("artifact_format") == "skops":
        try:
            trusted_skops_types(recorded.get("skops_types", []), policy)
        except ModelLoadError:
            return False
        return True
    return False
