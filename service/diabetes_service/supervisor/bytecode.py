"""`python -m diabetes_service.supervisor.bytecode`: import what a start from a prepared model imports.

Run once while an image is built, with PYTHONPYCACHEPREFIX set, it leaves the byte-code of exactly
that closure (the CLI's serve path, the supervisor, a worker and uvicorn's loop, HTTP and lifespan
modules; ~11 MB) for the image to ship, so a new container answers without compiling Python first.
So does a first start of a registered version (issue 26): the registry's REST client, the download
cache and the reader that serves a linear model from its artifact's arrays are in the closure too.
Anything else (scikit-learn, for a model that does not compile) is still compiled on first import.
"""

from __future__ import annotations

from importlib import import_module

# The console script (with its serve path), the supervisor, a worker, a prepared model's loading,
# PyYAML for an MLflow folder's MLmodel file, and the gRPC transport with protobuf's message factory
# (on by default: the spec's grpc_port).
MODULES = (
    "diabetes_cli.main",
    "diabetes_service.supervisor.process_env",
    "diabetes_service.supervisor.supervisor",
    "diabetes_service.supervisor.worker",
    "diabetes_service.model.loading",
    "diabetes_service.model.prepared",
    # A first start of a registered version: asked and fetched without MLflow, served from its arrays.
    "diabetes_store.registry",
    "diabetes_store.registry_rest",
    "diabetes_store.registry_sqlite",
    "diabetes_store.cache",
    "diabetes_service.model.provisional",
    "diabetes_service.model.compile.skops_linear",
    "yaml",
    "diabetes_service.transport.grpc_server",
    "google.protobuf.descriptor_pb2",
    "google.protobuf.message_factory",
)


async def _app(scope: object, receive: object, send: object) -> None:  # pragma: no cover - never called
    return None


def main() -> None:
    import uvicorn

    for name in MODULES:
        import_module(name)
    # The implementations uvicorn picks only when a server is configured, as each worker's is.
    uvicorn.Config(_app, loop="uvloop", http="httptools", lifespan="on").load()


if __name__ == "__main__":
    main()
