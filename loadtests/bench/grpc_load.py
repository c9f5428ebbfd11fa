"""A bounded gRPC load on loopback for the bench: `connections` channels, each sending one
ModelInfer after another for `seconds`, the same typed-contents request (FP64, the KServe clients'
form) to whichever V2 server is at `target`. wrk speaks HTTP/1.1 only, hence this; it runs in its own
process so that its CPU is not the bench's.

    python -m loadtests.bench.grpc_load TARGET MODEL ROWS_JSON CONNECTIONS SECONDS  ->  one JSON line
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc


def request(model: str, rows: list[list[float]]) -> service_pb2.ModelInferRequest:
    message = service_pb2.ModelInferRequest(model_name=model)
    tensor = message.inputs.add(name="input-0", datatype="FP64", shape=[len(rows), len(rows[0])])
    tensor.contents.fp64_contents.extend(value for row in rows for value in row)
    return message


async def run(target: str, model: str, rows: list[list[float]], connections: int, seconds: float) -> dict:
    message = request(model, rows)
    latencies: list[float] = []
    errors = 0

    async def one(channel: grpc.aio.Channel, deadline: float) -> None:
        nonlocal errors
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                answer = await stub.ModelInfer(message, timeout=10)
                if not answer.outputs:
                    errors += 1
                    continue
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    channels = [grpc.aio.insecure_channel(target) for _ in range(connections)]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), 10)
        started = time.monotonic()
        await asyncio.gather(*(one(channel, started + seconds) for channel in channels))
        elapsed = time.monotonic() - started
    finally:
        for channel in channels:
            await channel.close()
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0

    return {"requests": len(latencies), "seconds": elapsed, "errors": errors, "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def main(argv: list[str]) -> int:
    target, model, rows_file, connections, seconds = argv
    with open(rows_file) as handle:
        rows = json.load(handle)
    print(json.dumps(asyncio.run(run(target, model, rows, int(connections), float(seconds)))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
