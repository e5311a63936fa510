"""The server's application behind a raw ASGI callable, on a maintained HTTP server: the HTTP-layer
comparison of `make bench-serving` (docs/serving.md, "The HTTP layer").

    python -m benchmarks.asgi_server --on uvicorn|granian --port P   (CONVEYOR_HOME names the home)

The same application as `conveyor serve` (serving/rest_api.App: routes, parsing, batching, the
request log) in one process, with uvicorn (httptools, uvloop) or granian (its Rust HTTP/1.1 and
uvloop) in place of serving/http.py. Batches wait for returning callers counted by call
(serving.predictions.Returning), since ASGI does not say which connection a request came on.
Prints "... at http://HOST:PORT/v1/models/..." once the model is loaded, as `conveyor serve` does.
uvicorn, uvloop and granian are not in the lock: the benchmark puts them on PYTHONPATH
(`--http-layers DIR`), installed with `pip install --target DIR uvicorn uvloop granian`.
"""
from __future__ import annotations

import argparse
import socket
import time
from typing import Any

from serving.http_messages import Reply, Request, Response
from serving.predictions import Returning

_state: dict[str, Any] = {}


async def app(scope: dict, receive, send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    started = time.perf_counter()
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    request = Request(scope["method"], scope["path"], headers, body, started)
    application, returning = _state["app"], _state["returning"]
    returning.arrived()
    result = application.handle(request)
    if isinstance(result, Reply):
        waiter = _state["loop"].create_future()
        result.then(waiter.set_result)
        result = waiter
    response: Response = result if isinstance(result, Response) else await result
    returning.answered()
    head = [(b"content-type", response.content_type.encode()), (b"content-length", str(len(response.body)).encode())]
    head += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": head})
    await send({"type": "http.response.body", "body": response.body})
    application.observe(request, response, time.perf_counter() - started)


async def _lifespan(receive, send) -> None:
    import asyncio
    import os

    from pipeline import configs
    from serving.server import Server

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            config = configs.load()
            server = Server(config, socket.socket())  # its socket is not used: the ASGI server listens
            version = server.load()
            application = server.open()
            returning = Returning()
            application.predictions.returning = returning
            _state.update(server=server, app=application, returning=returning, loop=asyncio.get_running_loop())
            print(f"conveyor (ASGI, pid {os.getpid()}): serving model {config.model_name!r} version {version} at "
                  f"http://{os.environ['BENCH_HOST']}:{os.environ['BENCH_PORT']}/v1/models/{config.model_name}", flush=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _state["app"].draining = True
            _state["server"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--on", choices=("uvicorn", "granian"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.update(BENCH_HOST=args.host, BENCH_PORT=str(args.port))
    if args.on == "uvicorn":
        import uvicorn

        uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools", lifespan="on",
                    access_log=False, log_level="warning")
    else:
        from granian import Granian

        Granian("benchmarks.asgi_server:app", address=args.host, port=args.port, interface="asgi", workers=1,
                loop="uvloop", http="1", websockets=False, log_access=False, log_level="warning").serve()


if __name__ == "__main__":
    main()
