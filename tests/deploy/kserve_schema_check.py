"""Run by the kserve SDK's own virtualenv: are the JSON documents on standard input valid KServe resources?

The SDK's models are generated from KServe's OpenAPI schema (and the Kubernetes client's, for the pod
fields they embed). The document is walked against them: every field must be one the schema names at
that place, with a value of the schema's type, and each object is built by its model's constructor,
which refuses missing required fields and values outside an enum. Prints "valid" or one problem per line.
"""

from __future__ import annotations

import json
import re
import sys

import kserve.models
import kubernetes.client.models
from kserve.configuration import Configuration

PRIMITIVES = {"str": str, "int": int, "float": (int, float), "bool": bool, "object": object}


def model_class(name: str) -> type:
    found = getattr(kserve.models, name, None) or getattr(kubernetes.client.models, name, None)
    if found is None:
        raise LookupError(f"no model {name} in the SDK")
    return found


def build(data: object, kind: str, where: str, problems: list[str]) -> object:
    # The generators spell containers either way: list[T] / dict(str, T) or List[T] / Dict[str, T].
    listed = re.fullmatch(r"[lL]ist\[(.*)\]", kind)
    mapped = re.fullmatch(r"dict\(([^,]*), (.*)\)|Dict\[([^,]*), (.*)\]", kind)
    if listed:
        inner = listed.group(1)
        if not isinstance(data, list):
            problems.append(f"{where}: must be a list")
            return None
        return [build(item, inner, f"{where}[{i}]", problems) for i, item in enumerate(data)]
    if mapped:
        inner = mapped.group(2) or mapped.group(4)
        if not isinstance(data, dict):
            problems.append(f"{where}: must be a mapping")
            return None
        return {key: build(value, inner, f"{where}.{key}", problems) for key, value in data.items()}
    if kind in PRIMITIVES:
        if kind != "object" and (not isinstance(data, PRIMITIVES[kind]) or (kind == "int" and isinstance(data, bool))):
            problems.append(f"{where}: must be {kind}, not {type(data).__name__}")
        return data
    cls = model_class(kind)
    if not isinstance(data, dict):
        problems.append(f"{where}: must be a {kind} mapping")
        return None
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    values = {}
    for key, value in data.items():
        attr = by_json.get(key)
        if attr is None:
            problems.append(f"{where}.{key}: not a field of {kind}")
            continue
        values[attr] = build(value, cls.openapi_types[attr], f"{where}.{key}", problems)
    try:
        if "local_vars_configuration" in cls.__init__.__code__.co_varnames:
            config = Configuration()
            config.client_side_validation = True
            return cls(**values, local_vars_configuration=config)
        return cls(**values)
    except (ValueError, TypeError) as exc:
        problems.append(f"{where}: {exc}")
        return None


KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
}


def main() -> int:
    """Standard input: a JSON list of documents."""
    problems: list[str] = []
    for document in json.load(sys.stdin):
        kind = KINDS.get((document.get("apiVersion"), document.get("kind")))
        if kind is None:
            problems.append(f"{document.get('apiVersion')} {document.get('kind')}: not a KServe kind checked here")
            continue
        build(document, kind, document["kind"], problems)
    print("\n".join(problems) or "valid")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
