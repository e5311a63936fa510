"""Execute a compiled Kubeflow v2 / Vertex pipeline spec here, task by task, as its launcher would.

A test harness (behind `conveyor kubeflow --check-locally` and tests/test_kubeflow_execute.py), not
an orchestrator for users: it proves that the spec's commands, arguments and artifact wiring run.
For each task, in dependency order:

1. it builds the ExecutorInput from the spec: the task's parameter constants, its input artifacts
   (name, URI, type and the metadata their producer's executor wrote), and one output artifact per
   output definition at `<pipeline root>/<pipeline>/<run id>/<task>/<output key>`, with the
   executor output file beside them;
2. on Vertex only (target "vertex"), it first runs the container's `lifecycle.preCacheCheck`
   (TFX's file-based ExampleGen driver) and applies what it wrote, parameters and output artifact
   metadata, as Vertex does; open-source KFP runs no such hook (target "kfp");
3. it looks the task up in its cache (see below); on a miss it runs the container's command, with
   `{{$}}` replaced by the ExecutorInput JSON and `python` by this Python, as a process of its
   own, and reads back the ExecutorOutput the executor wrote.
It stops at the first failed task; later tasks do not run.

Every command (driver or executor) runs through one `warm_start.TaskStarter`: the spec's
`python -m <entrypoint> ...` commands are forked from an interpreter that has already imported
the entrypoint's modules and the task's executor class (one child per command, its exit status
the task's, its output the task log), which saves each task the 10 to 25 s of importing
TensorFlow, TFX, TFMA and Beam; any other command runs as a plain subprocess
(conveyor/kubeflow/warm_start.py says what the child shares and how fork safety is checked).

"Cached" here means what it means on KFP and Vertex: a task whose cache key matches an earlier
successful execution is not run, and the artifacts that execution produced are handed downstream
again. The key is the task's component definition, its executor (image, command, arguments), its
input parameter values (after the driver on Vertex, so a new span or changed files change it) and
the names of its input artifacts. Like the orchestrators, nothing checks that the files behind an
artifact are unchanged. The cache lives under the harness's state directory, not in the bucket.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from conveyor.kubeflow import warm_start
from conveyor.kubeflow.compiler import TARGETS

EXECUTOR_INPUT_PLACEHOLDER = "{{$}}"
RAN, CACHED, FAILED = "ran", "cached", "failed"
TASK_TIMEOUT_SECONDS = 3600


class SpecError(ValueError):
    """The spec uses something this harness does not execute (it says what)."""


@dataclass
class TaskRun:
    task: str
    status: str  # RAN | CACHED | FAILED
    seconds: float
    log: Path | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {name, uri, metadata}
    error: str | None = None


@dataclass
class Execution:
    run_id: str
    target: str
    tasks: list[TaskRun]

    @property
    def ok(self) -> bool:
        return all(t.status != FAILED for t in self.tasks)

    @property
    def failed(self) -> TaskRun | None:
        return next((t for t in self.tasks if t.status == FAILED), None)

    def task(self, name: str) -> TaskRun:
        return next(t for t in self.tasks if t.task == name)

    def metadata(self, task: str, key: str) -> dict[str, Any]:
        """The metadata the executor wrote for output `key` of `task`."""
        return self.task(task).outputs[key].get("metadata", {})


def task_order(spec: dict[str, Any]) -> list[str]:
    """The DAG's tasks, each after every task it depends on (ties in name order)."""
    tasks = spec["root"]["dag"]["tasks"]
    waiting = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    order: list[str] = []
    while waiting:
        ready = sorted(name for name, deps in waiting.items() if deps <= set(order))
        if not ready:
            raise SpecError(f"the DAG has a cycle among {sorted(waiting)}")
        order.append(ready[0])
        del waiting[ready[0]]
    return order


def _component(spec: dict[str, Any], task: str) -> dict[str, Any]:
    return spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]


def _container(spec: dict[str, Any], task: str) -> dict[str, Any]:
    label = _component(spec, task)["executorLabel"]
    executor = spec["deploymentSpec"]["executors"][label]
    if "container" not in executor:
        raise SpecError(f"task {task} is not a container ({sorted(executor)}): importers and resolvers are not executed here")
    return executor["container"]


def _parameters(spec: dict[str, Any], task: str) -> dict[str, Any]:
    given = spec["root"]["dag"]["tasks"][task].get("inputs", {}).get("parameters", {})
    values = {}
    for name, source in given.items():
        if "constant" not in source.get("runtimeValue", {}):
            raise SpecError(f"task {task} parameter {name} is not a compiled-in constant: {source}")
        values[name] = source["runtimeValue"]["constant"]
    for name, definition in _component(spec, task).get("inputDefinitions", {}).get("parameters", {}).items():
        if name not in values and "defaultValue" in definition:
            values[name] = definition["defaultValue"]
    return values


def _input_artifacts(spec: dict[str, Any], task: str, done: dict[str, TaskRun]) -> dict[str, Any]:
    definitions = _component(spec, task).get("inputDefinitions", {}).get("artifacts", {})
    artifacts = {}
    for key, source in spec["root"]["dag"]["tasks"][task].get("inputs", {}).get("artifacts", {}).items():
        if "taskOutputArtifact" not in source:
            raise SpecError(f"task {task} input {key} is not another task's output: {source}")
        producer = source["taskOutputArtifact"]
        upstream = done[producer["producerTask"]].outputs[producer["outputArtifactKey"]]
        artifacts[key] = {"artifacts": [{**upstream, "type": definitions[key]["artifactType"]}]}
    return artifacts


def executor_input(
    spec: dict[str, Any], task: str, done: dict[str, TaskRun], task_root: str, run_id: str
) -> dict[str, Any]:
    """The ExecutorInput (JSON form) the launcher hands `task`'s container."""
    outputs = {
        key: {
            "artifacts": [
                {
                    "name": f"{run_id}.{task}.{key}",
                    "uri": f"{task_root}/{key}",
                    "type": definition["artifactType"],
                    "metadata": {},
                }
            ]
        }
        for key, definition in _component(spec, task).get("outputDefinitions", {}).get("artifacts", {}).items()
    }
    return {
        "inputs": {"parameterValues": _parameters(spec, task), "artifacts": _input_artifacts(spec, task, done)},
        "outputs": {"artifacts": outputs, "outputFile": f"{task_root}/executor_output.json"},
    }


def cache_key(spec: dict[str, Any], task: str, invocation: dict[str, Any]) -> str:
    inputs = invocation["inputs"]
    material = {
        "component": _component(spec, task),
        "executor": _container(spec, task),
        "parameters": inputs["parameterValues"],
        "artifacts": {k: [a["name"] for a in v["artifacts"]] for k, v in inputs["artifacts"].items()},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _command(step: dict[str, Any], invocation: dict[str, Any]) -> list[str]:
    """The container's command line, run by this Python; `{{$}}` becomes the ExecutorInput JSON."""
    command = [sys.executable if part == "python" else part for part in step["command"]]
    args = [json.dumps(invocation) if arg == EXECUTOR_INPUT_PLACEHOLDER else arg for arg in step.get("args", [])]
    unresolved = [arg for arg in args if "{{$" in arg]
    if unresolved:
        raise SpecError(f"placeholders this harness does not fill: {unresolved}")
    return command + args


def _error_of(log: Path) -> str:
    """The exception a failed task's log ends with (its last traceback's message), else its last lines."""
    lines = log.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if starts:
        tail = lines[starts[-1] + 1 :]
        first = next((i for i, line in enumerate(tail) if not line.startswith(" ")), len(tail))
        return "\n".join(tail[first : first + 20]) or "\n".join(tail[-5:])
    return "\n".join(lines[-5:])


def task_starter(state_dir: Path) -> warm_start.TaskStarter:
    """What runs the tasks' commands: one warm interpreter for all of them, in the tasks' environment."""
    env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return warm_start.TaskStarter(state_dir / "warm-start", env)


def _executor_modules(command: list[str]) -> list[str]:
    """The module of the command's `--executor_class_path` (the entrypoint imports it at run time)."""
    if "--executor_class_path" not in command[:-1]:
        return []
    return [command[command.index("--executor_class_path") + 1].rpartition(".")[0]]


def _run(starter: warm_start.TaskStarter, command: list[str], log: Path, cwd: Path) -> bool:
    status = starter.run(command, log, cwd, preload=_executor_modules(command), timeout=TASK_TIMEOUT_SECONDS)
    return status == 0


def _apply_driver_output(invocation: dict[str, Any]) -> None:
    """What Vertex does with the driver's ExecutorOutput: updated parameters and output metadata."""
    with open(invocation["outputs"]["outputFile"]) as handle:
        written = json.load(handle)
    invocation["inputs"]["parameterValues"].update(written.get("parameterValues", {}))
    for key, artifacts in written.get("artifacts", {}).items():
        ours = invocation["outputs"]["artifacts"][key]["artifacts"][0]
        ours["metadata"].update(artifacts["artifacts"][0].get("metadata", {}))


def _outputs_of(invocation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Output artifacts as the executor reported them (name, URI, metadata), by output key."""
    with open(invocation["outputs"]["outputFile"]) as handle:
        written = json.load(handle)
    result = {}
    for key, declared in invocation["outputs"]["artifacts"].items():
        reported = written.get("artifacts", {}).get(key, {}).get("artifacts", [{}])[0]
        artifact = declared["artifacts"][0]
        result[key] = {
            "name": reported.get("name") or artifact["name"],
            "uri": reported.get("uri") or artifact["uri"],
            "metadata": reported.get("metadata", artifact["metadata"]),
        }
    return result


def execute(
    spec: dict[str, Any],
    pipeline_root: str,
    target: str,
    state_dir: Path,
    run_id: str | None = None,
    on_task: Callable[[TaskRun], None] | None = None,
    starter: warm_start.TaskStarter | None = None,
) -> Execution:
    """Run every task of `spec` (see the module docstring); `on_task(TaskRun)` after each one.

    `pipeline_root` is a local directory standing in for the bucket; `state_dir` holds the cache,
    the task logs and the tasks' working directories. `starter` (default: `task_starter(state_dir)`,
    closed at the end) runs the commands; pass one to share its warm interpreter between executions.
    """
    if target not in TARGETS:
        raise SpecError(f"target must be one of {TARGETS}, got {target!r}")
    run_id = run_id or time.strftime("run-%Y%m%d-%H%M%S-") + f"{time.time_ns() % 10**9:09d}"
    run_root = f"{pipeline_root.rstrip('/')}/{spec['pipelineInfo']['name']}/{run_id}"
    done: dict[str, TaskRun] = {}
    runs: list[TaskRun] = []
    with contextlib.ExitStack() as stack:
        starter = starter or stack.enter_context(task_starter(state_dir))
        for task in task_order(spec):
            result = _execute_task(spec, task, done, f"{run_root}/{task}", run_id, target, state_dir, starter)
            runs.append(result)
            if on_task:
                on_task(result)
            if result.status == FAILED:
                break
            done[task] = result
    return Execution(run_id, target, runs)


def _execute_task(
    spec: dict[str, Any],
    task: str,
    done: dict[str, TaskRun],
    task_root: str,
    run_id: str,
    target: str,
    state_dir: Path,
    starter: warm_start.TaskStarter,
) -> TaskRun:
    started = time.monotonic()
    invocation = executor_input(spec, task, done, task_root, run_id)
    container = _container(spec, task)
    log = state_dir / "logs" / run_id / f"{task}.log"
    workdir = state_dir / "work" / run_id / task
    driver = container.get("lifecycle", {}).get("preCacheCheck") if target == "vertex" else None
    if driver:
        if not _run(starter, _command(driver, invocation), log, workdir):
            return TaskRun(task, FAILED, time.monotonic() - started, log, error="driver: " + _error_of(log))
        _apply_driver_output(invocation)
    caching = spec["root"]["dag"]["tasks"][task].get("cachingOptions", {}).get("enableCache", False)
    entry = state_dir / "cache" / f"{cache_key(spec, task, invocation)}.json"
    if caching and entry.exists():
        outputs = json.loads(entry.read_text())["outputs"]
        return TaskRun(task, CACHED, time.monotonic() - started, log if driver else None, outputs)
    if not _run(starter, _command(container, invocation), log, workdir):
        return TaskRun(task, FAILED, time.monotonic() - started, log, error=_error_of(log))
    outputs = _outputs_of(invocation)
    if caching:
        entry.parent.mkdir(parents=True, exist_ok=True)
        temporary = entry.with_suffix(".tmp")
        temporary.write_text(json.dumps({"run_id": run_id, "task": task, "outputs": outputs}, sort_keys=True))
        temporary.replace(entry)
    return TaskRun(task, RAN, time.monotonic() - started, log, outputs)
