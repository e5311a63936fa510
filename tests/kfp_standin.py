"""A recording stand-in for the Kubeflow Pipelines v2beta1 API on 127.0.0.1 (no cluster here).

It answers what kfp.Client sends to submit, find and poll a run: list and create experiment, create
run, list runs (filtered by display name), get run. Every request is recorded; a created run is
kept, RUNNING, until the test sets its state (and task details) with `finish`.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RUNS_PATH = "/apis/v2beta1/runs"


class KfpStandIn:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, body: dict[str, Any], status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                stand_in.requests.append(("GET", self.path, {}))
                if self.path.startswith(RUNS_PATH + "/"):
                    run_id = self.path[len(RUNS_PATH) + 1 :].split("?")[0]
                    if run_id in stand_in.runs:
                        self._reply(stand_in.runs[run_id])
                    else:
                        self._reply({"error_message": f"run {run_id} not found", "code": 5}, status=404)
                    return
                if self.path.split("?")[0] == RUNS_PATH:  # list runs, by a display_name EQUALS filter
                    query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                    wanted = {p["stringValue"] for p in json.loads(query.get("filter", ["{}"])[0]).get("predicates", [])
                              if p.get("key") == "display_name" and p.get("operation") == "EQUALS"}
                    found = [run for run in stand_in.runs.values() if not wanted or run["display_name"] in wanted]
                    self._reply({"runs": found, "total_size": len(found)} if found else {})
                    return
                self._reply({})  # list experiments: none of that name yet

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.requests.append(("POST", self.path, body))
                if self.path.startswith("/apis/v2beta1/experiments"):
                    self._reply({"experiment_id": "exp-1", "display_name": body["display_name"]})
                    return
                run_id = f"run-{len(stand_in.runs) + 1}"
                stand_in.runs[run_id] = {**body, "run_id": run_id, "state": "RUNNING"}
                self._reply(stand_in.runs[run_id])

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def posts(self) -> list[tuple[str, dict[str, Any]]]:
        return [(path, body) for method, path, body in self.requests if method == "POST"]

    def finish(
        self,
        run_id: str,
        state: str,
        failed_task: str | None = None,
        error: str | None = None,
        tasks: dict[str, str] | None = None,
    ) -> None:
        """Set a run's state as KFP reports it: `tasks` the state of each task (as KFP words it),
        `failed_task` fails that task with `error`."""
        run = self.runs[run_id]
        run["state"] = state
        details = [{"display_name": name, "state": word} for name, word in (tasks or {}).items()]
        if failed_task:
            details = [d for d in details if d["display_name"] != failed_task]
            details += [
                {"display_name": "root", "state": "FAILED"},
                {"display_name": failed_task, "state": "FAILED", "error": {"message": error or ""}},
            ]
            run["error"] = {"message": "pipeline failed"}
        if details:
            run["run_details"] = {"task_details": details}

    def wait_for_runs(self, count: int, timeout: float = 300.0) -> list[str]:
        """Block until `count` runs were created (by another process); their ids."""
        deadline = time.monotonic() + timeout
        while len(self.runs) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.runs)} of {count} runs created after {timeout} s")
            time.sleep(0.1)
        return list(self.runs)

    def __enter__(self) -> "KfpStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
