"""A gRPC load generator for the model server (TF Serving's PredictionService/Predict), its own process.

    python -m benchmarks.grpc_load_client --target HOST:PORT --requests-file FILE
        [--concurrency 8] [--requests N] [--warmup N]

FILE holds one serialized PredictRequest per line, base64-encoded. One grpc.aio channel (one
HTTP/2 connection, as a gRPC client holds) with `concurrency` calls in flight, each sent again as
soon as it is answered; requests and answers travel as bytes, so the client spends no time on
protobuf. Prints the same JSON as benchmarks/load_client.py (statuses are gRPC code names).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from pathlib import Path

import grpc

from benchmarks.load_client import Result

METHOD = "/tensorflow.serving.PredictionService/Predict"


async def run(target: str, messages: list[bytes], concurrency: int, requests: int) -> Result:
    result = Result()
    sent = 0
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)  # bytes in, bytes out

        async def client() -> None:
            nonlocal sent
            while sent < requests:
                message = messages[sent % len(messages)]
                sent += 1
                begin = time.perf_counter()
                try:
                    await call(message, timeout=30)
                    code = "OK"
                except grpc.aio.AioRpcError as exc:
                    code = exc.code().name
                    result.errors.append(f"{code}: {exc.details()}")
                result.latencies.append(time.perf_counter() - begin)
                result.statuses[code] = result.statuses.get(code, 0) + 1

        await channel.channel_ready()
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.wall = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True)
    parser.add_argument("--requests-file", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=0)
    args = parser.parse_args(argv)
    messages = [base64.b64decode(line) for line in args.requests_file.read_text().split()]
    warm = asyncio.run(run(args.target, messages, args.concurrency, args.warmup)) if args.warmup else Result()
    summary = asyncio.run(run(args.target, messages, args.concurrency, args.requests)).summary()
    summary["statuses"] = {("200" if k == "OK" else k): v for k, v in summary["statuses"].items()}
    summary["warmup_statuses"] = {("200" if k == "OK" else k): v for k, v in warm.statuses.items()}
    json.dump(summary, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
