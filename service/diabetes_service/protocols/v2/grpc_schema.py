"""The Open Inference Protocol's gRPC messages, from the schema Triton's client package publishes.

`tritonclient` ships the code generated from the protocol's proto (package `inference`, a superset
of KServe's `grpc_predict_v2.proto`), but importing it loads tritonclient's whole client: ~0.5 s of
imports per worker (ml_dtypes alone ~0.28 s) and ~32 MB of dependencies (ml_dtypes, rapidjson)
that would take the image past its 350 MB budget. So the schema travels as data: a build step
(`python -m diabetes_service.protocols.v2.grpc_schema`, run by `make install` and the image's build
stage, where tritonclient is installed) writes tritonclient's file descriptors as one
`FileDescriptorSet` next to this module, and a worker builds the message classes from it with
protobuf's own message factory: the same classes generated code would give, without tritonclient.
Where the file was never written, tritonclient's generated modules are used as they are.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"
SCHEMA_FILE = Path(__file__).with_name("grpc_schema.binpb")  # what `make install` and the image write


ADVICE = (
    "the gRPC port needs the Open Inference Protocol's schema: install the `grpc` extra "
    "(tritonclient[grpc]) or run `python -m diabetes_service.protocols.v2.grpc_schema`; "
    "or turn gRPC off with --grpc-port 0"
)


class SchemaMissing(RuntimeError):
    """Neither the written schema nor tritonclient is installed."""


def require() -> None:
    """Refuse early (the supervisor, before any worker starts) where no worker could serve gRPC."""
    import importlib.util

    if not SCHEMA_FILE.exists() and importlib.util.find_spec("tritonclient") is None:
        raise SchemaMissing(ADVICE)


def messages() -> tuple[Any, Any]:
    """(namespace of the `inference` message classes by name, the service's descriptor)."""
    if SCHEMA_FILE.exists():
        return _from_descriptor_set(SCHEMA_FILE.read_bytes())
    try:
        from tritonclient.grpc import service_pb2
    except ImportError as exc:
        raise SchemaMissing(ADVICE) from exc
    return service_pb2, service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]


def _from_descriptor_set(data: bytes) -> tuple[Any, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:  # dependencies first
        pool.Add(file)
    service = pool.FindServiceByName(SERVICE)
    classes = {
        name: message_factory.GetMessageClass(message) for name, message in service.file.message_types_by_name.items()
    }
    return SimpleNamespace(**classes), service


def descriptor_set() -> bytes:
    """tritonclient's `grpc_service.proto` and what it imports, dependencies first, serialized."""
    from google.protobuf import descriptor_pb2
    from tritonclient.grpc import service_pb2

    ordered: list[Any] = []

    def visit(file: Any) -> None:
        if file.name in {f.name for f in ordered}:
            return
        for dependency in file.dependencies:
            visit(dependency)
        ordered.append(file)

    visit(service_pb2.DESCRIPTOR)
    out = descriptor_pb2.FileDescriptorSet()
    for file in ordered:
        file.CopyToProto(out.file.add())
    return out.SerializeToString()


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else SCHEMA_FILE
    data = descriptor_set()
    _from_descriptor_set(data)  # refuse to write a schema that does not load
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)
    print(f"wrote {target} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
