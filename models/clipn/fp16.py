"""fp16 variant of an exported encoder graph, keeping float32 at the interface.

The encoder body runs in float16 (weights, constants, activations); the graph input is cast
to float16 on entry and the raw features back to float32 on exit, then L2-normalised in
float32 so the sum of squares cannot overflow half precision. Callers see the same IO
names and types as the float32 graph.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_FLOAT = TensorProto.FLOAT
_HALF = TensorProto.FLOAT16


def _half_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    array = numpy_helper.to_array(tensor).astype(np.float16)
    return numpy_helper.from_array(array, tensor.name)


def convert_to_fp16(raw_path: Path, out_path: Path, normalise: bool = True) -> None:
    """`raw_path`: an fp32 graph whose single output is the unnormalised feature."""
    model = onnx.load(str(raw_path))
    graph = model.graph
    for i, init in enumerate(graph.initializer):
        if init.data_type == _FLOAT:
            graph.initializer[i].CopyFrom(_half_tensor(init))
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == _FLOAT:
                    attr.t.CopyFrom(_half_tensor(attr.t))
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == _FLOAT:
                    attr.i = _HALF
    # Inputs: cast float32 -> float16 right after entry.
    entry_casts = []
    for graph_input in graph.input:
        if graph_input.type.tensor_type.elem_type != _FLOAT:
            continue
        inner = graph_input.name + "_fp16"
        for node in graph.node:
            for k, name in enumerate(node.input):
                if name == graph_input.name:
                    node.input[k] = inner
        entry_casts.append(helper.make_node("Cast", [graph_input.name], [inner], to=_HALF, name=inner + "_cast"))
    # Output: cast back to float32, then (optionally) L2-normalise in float32.
    output = graph.output[0]
    produced = output.name + "_fp16"
    for node in graph.node:
        for k, name in enumerate(node.output):
            if name == output.name:
                node.output[k] = produced
    tail = [helper.make_node("Cast", [produced], [output.name + "_raw" if normalise else output.name], to=_FLOAT, name="exit_cast")]
    if normalise:
        eps = numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "l2_eps")
        graph.initializer.append(eps)
        raw = output.name + "_raw"
        tail += [
            helper.make_node("ReduceL2", [raw], ["l2_norm"], axes=[-1], keepdims=1, name="l2_norm"),
            helper.make_node("Max", ["l2_norm", "l2_eps"], ["l2_norm_safe"], name="l2_clamp"),
            helper.make_node("Div", [raw, "l2_norm_safe"], [output.name], name="l2_div"),
        ]
    nodes = entry_casts + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
