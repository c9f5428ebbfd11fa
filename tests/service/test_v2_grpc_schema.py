"""The gRPC schema written from tritonclient: the same messages, and workers that never import it."""

from __future__ import annotations

import os
import subprocess
import sys

from tritonclient.grpc import service_pb2

from diabetes_service.protocols.v2 import grpc_schema as v2_grpc_schema


def _fields(descriptor) -> dict[str, list[tuple[str, int, int]]]:
    return {
        name: [(f.name, f.number, f.type) for f in message.fields]
        for name, message in descriptor.message_types_by_name.items()
    }


def test_the_written_schema_has_tritonclients_messages_and_service(tmp_path):
    target = tmp_path / "schema.binpb"
    assert v2_grpc_schema.main([str(target)]) == 0
    pb, service = v2_grpc_schema._from_descriptor_set(target.read_bytes())
    assert service.full_name == "inference.GRPCInferenceService"
    assert _fields(service.file) == _fields(service_pb2.DESCRIPTOR)
    request = pb.ModelInferRequest(model_name="m", id="x")
    request.inputs.add(name="input-0", datatype="FP64", shape=[1, 10]).contents.fp64_contents.extend([0.5] * 10)
    # Byte for byte what tritonclient's generated class reads: the wire format is the same.
    theirs = service_pb2.ModelInferRequest.FromString(request.SerializeToString())
    assert list(theirs.inputs[0].contents.fp64_contents) == [0.5] * 10
    assert not list(tmp_path.glob("*.partial"))


def test_serving_from_the_written_schema_imports_neither_tritonclient_nor_ml_dtypes(tmp_path):
    target = tmp_path / "schema.binpb"
    v2_grpc_schema.main([str(target)])
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from diabetes_service.protocols.v2 import grpc_schema as s\n"
        f"s.SCHEMA_FILE = Path({str(target)!r})\n"
        "import diabetes_service.transport.grpc_server as g\n"
        "pb, service = s.messages()\n"
        "assert pb.ModelInferResponse(id='y').id == 'y'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'tritonclient', 'ml_dtypes', 'grpc'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_without_schema_or_tritonclient_grpc_is_refused_with_advice(tmp_path):
    """An install with neither: the supervisor's check and a worker's both say what to do."""
    hide = tmp_path / "hide"
    (hide / "tritonclient").mkdir(parents=True)  # shadows the installed one: its import fails
    (hide / "tritonclient" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    probe = (
        "import sys, importlib.util\n"
        "from pathlib import Path\n"
        "from diabetes_service.protocols.v2 import grpc_schema as s\n"
        f"s.SCHEMA_FILE = Path({str(tmp_path / 'absent.binpb')!r})\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'tritonclient' else spec(name, *a)\n"
        "try:\n"
        "    s.require()\n"
        "except s.SchemaMissing as exc:\n"
        "    print('refused:', exc)\n"
        "try:\n"
        "    s.messages()\n"
        "except s.SchemaMissing as exc:\n"
        "    print('refused:', exc)\n"
    )
    probe = "import importlib.util\nspec = importlib.util.find_spec\n" + probe
    env = {**os.environ, "PYTHONPATH": str(hide)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2, out.stderr
    assert all(line.startswith("refused:") and "--grpc-port 0" in line for line in lines)
