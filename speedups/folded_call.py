"""serving_default as one graph with its constants folded in, used only where it answers bit for bit.

The traced call (`LoadedModel.load`) is the SavedModel's signature as a concrete function: a chain
of nested function calls reading ~40 variables. TensorFlow runs a function call's executor on one
of its inter-op threads while the caller waits, and the default executor hands ops to those
threads too. The folded call is the same computation inlined into one graph, with the variables
turned into constants, run by the single-threaded executor and called as one eager op
(StatefulPartitionedCall), which TensorFlow runs synchronously: its kernels run in the calling
thread, and no other thread has to be woken up. Single-instance calls in one process, medians of
two runs: 0.37 and 0.31 ms against 0.57 and 0.52 ms for the traced call back to back, and 0.54
and 0.66 against 0.79 and 0.97 ms with 1 ms idle before each, as a server's calls come
(docs/serving.md).

Not every variable becomes a constant. Under oneDNN (TensorFlow's default on x86 CPUs) a matrix
product whose weights are constants runs other kernels, and a fully frozen graph's probabilities
differ from the SavedModel's in the last bits on about half the rows. So the variables a matrix
product reads stay variables, and everything else (Transform's statistics, embeddings, biases)
is folded.

That rule picks the candidate; a check decides. The folded call is used only if, on the caller's
probe batches (models/saved_model.py: 256 synthetic instances one at a time, in batches of 8, and
all together), it answers exactly the bytes the traced call answers, and the traced call still
answers what it did before the conversion. Otherwise `folded` returns None and the caller keeps
the traced call. A speedup (speedups/__init__.py): off with CONVEYOR_SPEEDUPS=0 or another
TensorFlow than the one it was tested on.

The host folds a version after it starts serving (serving/host.py), so the conversion must not
disturb the traced call meanwhile.

TensorFlow has no public API for this: the conversion is convert_variables_to_constants_v2's, with
its variable filter (tensorflow.python.framework.convert_to_constants), the graph is wrapped with
tensorflow.python.eager.wrap_function and called through
tensorflow.python.ops.gen_functional_ops.stateful_partitioned_call; tests/test_folded_call.py pins
them, and that no work goes to the inter-op threads.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from speedups import switch

log = logging.getLogger(__name__)

# Ops whose weights stay variables: a MatMul with constant weights rounds differently under oneDNN
# (measured); the other matrix products are kept with it for the same reason.
MATRIX_OPS = frozenset({
    "MatMul", "_FusedMatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum",
    "Conv2D", "Conv3D", "DepthwiseConv2dNative", "_FusedConv2D",
})
_PASS_THROUGH = frozenset({"ReadVariableOp", "Identity"})
# Runs the graph's ops one after the other in the thread that runs the graph (kernels still use the
# intra-op pool), rather than spreading them over the inter-op threads.
EXECUTOR = "SINGLE_THREADED_EXECUTOR"
Outputs = dict[str, Any]


def folded(call: Any, probes: list[Any], name: str = "the model") -> Callable[[Any], Outputs] | None:
    """`call` (a ConcreteFunction of one string tensor) inlined and folded, or None if that does
    not answer exactly what `call` answers on every batch of `probes`, or if the speedup is off
    (speedups/__init__.py); `name` says whose call in the warnings. Never raises."""
    if not switch.allowed("folded_call"):
        return None
    try:
        before = [_bytes(call(batch)) for batch in probes]
        candidate = _fold(call)
        if all(_bytes(call(b)) == want and _bytes(candidate(b)) == want for b, want in zip(probes, before)):
            return candidate
        log.warning("%s: the folded model call does not answer exactly as the SavedModel: keeping the traced call", name)
    except Exception as exc:  # any failure here only costs speed
        log.warning("%s: the model call could not be folded (%s: %s): keeping the traced call", name, type(exc).__name__, exc)
    return None


def _fold(call: Any) -> Callable[[Any], Outputs]:
    from tensorflow.python.eager import wrap_function
    from tensorflow.python.framework import convert_to_constants

    data = convert_to_constants._FunctionConverterDataInEager(
        func=call, lower_control_flow=False, aggressive_inlining=False)
    for name in _read_by_matrix_ops(data.graph_def, list(data.tensor_data)):
        del data.tensor_data[name]
    graph_def, converted = convert_to_constants._replace_variables_by_constants(converter_data=data)
    # Not _construct_concrete_function: it first removes the graph's functions from the eager
    # context, and the traced call may be answering requests meanwhile.
    captured = zip(call.graph.internal_captures, call.captured_inputs)  # (placeholder, variable handle)
    left = [(placeholder, value) for i, (placeholder, value) in enumerate(captured) if i not in converted]
    graph = wrap_function.function_from_graph_def(
        graph_def, [call.inputs[0].name] + [placeholder.name for placeholder, _ in left], [tensor.name for tensor in call.outputs])
    handles = [value for _, value in left]  # the variables left, in the graph's input order
    return _GraphOp(graph, handles, call.structured_outputs, [tensor.dtype for tensor in call.outputs])


class _GraphOp:
    """Calls the folded graph as one eager op (StatefulPartitionedCall), not as a function.

    A tf.function call runs its executor on one of TensorFlow's inter-op threads while the caller
    waits; an eager op is run synchronously, its kernels in the calling thread.
    """

    def __init__(self, graph: Any, handles: list[Any], structure: Any, types: list[Any]):
        import tensorflow as tf
        from tensorflow.python.ops import gen_functional_ops

        self.graph = graph  # its function stays registered in the eager context while it lives
        self.name, self.handles, self.structure, self.types = graph.name, handles, structure, types
        self._op, self._pack = gen_functional_ops.stateful_partitioned_call, tf.nest.pack_sequence_as

    def __call__(self, examples: Any) -> Outputs:
        outputs = self._op(args=[examples, *self.handles], Tout=self.types, f=self.name, executor_type=EXECUTOR)
        return self._pack(self.structure, outputs)


def _read_by_matrix_ops(graph_def: Any, names: Iterable[str]) -> set[str]:
    """Those of `names` (the graph's captured inputs) whose value a matrix product reads."""
    readers: dict[str, list[Any]] = {}
    for node in graph_def.node:
        for source in node.input:
            readers.setdefault(source.lstrip("^").split(":")[0], []).append(node)

    def reaches_matrix_op(name: str) -> bool:
        for node in readers.get(name, []):
            if node.op in MATRIX_OPS or (node.op in _PASS_THROUGH and reaches_matrix_op(node.name)):
                return True
        return False

    return {name for name in names if reaches_matrix_op(name)}


def _bytes(outputs: Outputs) -> dict[str, bytes]:
    return {key: value.numpy().tobytes() for key, value in outputs.items()}
