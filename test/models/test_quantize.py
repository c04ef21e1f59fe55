"""int8 dynamic quantisation (models/clipn/quantize.py): graph structure and weight maths.

onnxruntime is not installed for Python here; running the int8 graphs (and their cosine to the
fp32 features) is tested from TypeScript with onnxruntime-node (test/unit/int8-encoder.test.ts).
"""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from clipn.export import export_model
from clipn.quantize import MS_DOMAIN, quantize_file, quantize_graph, quantize_weight


@pytest.fixture(scope="module")
def exported(tmp_path_factory, micro_model, small_merges):
    out = tmp_path_factory.mktemp("model_int8")
    manifest = export_model(micro_model, small_merges, out, "micro-int8", int8=True)
    return out, manifest


def _weights_of(model):
    inits = {i.name: i for i in model.graph.initializer}
    alias = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity"}

    def resolve(name):
        while name not in inits and name in alias:
            name = alias[name]
        return inits.get(name)

    found = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            w = resolve(node.input[1])
            if w is not None and w.data_type == TensorProto.FLOAT and len(w.dims) == 2:
                found.append(node)
    return found


def test_export_writes_the_int8_graph_and_lists_it(exported):
    out, manifest = exported
    assert manifest["graphs"]["image_int8"] == "image_encoder.int8.onnx"
    assert "image_encoder.int8.onnx" in manifest["files"]
    assert json.loads((out / "clipn.json").read_text())["graphs"]["image_int8"] == "image_encoder.int8.onnx"
    fp32 = onnx.load(str(out / manifest["graphs"]["image"]))
    int8 = onnx.load(str(out / manifest["graphs"]["image_int8"]))
    onnx.checker.check_model(int8)
    # Same interface: names, types and the dynamic batch axis.
    assert [(v.name, v.type) for v in int8.graph.input] == [(v.name, v.type) for v in fp32.graph.input]
    assert [(v.name, v.type) for v in int8.graph.output] == [(v.name, v.type) for v in fp32.graph.output]
    assert int8.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert (out / "image_encoder.int8.onnx").stat().st_size < 0.6 * (out / "image_encoder.onnx").stat().st_size


def test_every_float_weight_matmul_becomes_dynamic_quantize_matmul(exported):
    out, manifest = exported
    fp32 = onnx.load(str(out / manifest["graphs"]["image"]))
    int8 = onnx.load(str(out / manifest["graphs"]["image_int8"]))
    candidates = _weights_of(fp32)
    # micro, 2 blocks: the first (in_proj MatMul, out_proj Gemm, c_fc, c_proj); the last, run at
    # the class token only (export.py), has q, k and v projections of its own, out_proj, c_fc and
    # c_proj, where q and everything after it act on [B, W] rows (Gemm); then the output projection.
    assert len(candidates) == 4 + 6 + 1
    assert sum(n.op_type == "Gemm" for n in candidates) == 1 + 4
    dq = [n for n in int8.graph.node if n.op_type == "DynamicQuantizeMatMul"]
    assert len(dq) == len(candidates)
    assert _weights_of(int8) == []  # no float weight left behind a MatMul/Gemm
    assert not any(n.op_type == "Gemm" for n in int8.graph.node)
    # The activation x activation MatMuls of attention stay float.
    assert sum(n.op_type == "MatMul" for n in int8.graph.node) == sum(n.op_type == "MatMul" for n in fp32.graph.node) - sum(n.op_type == "MatMul" for n in candidates)
    assert any(o.domain == MS_DOMAIN and o.version == 1 for o in int8.opset_import)
    inits = {i.name: i for i in int8.graph.initializer}
    for node in dq:
        assert node.domain == MS_DOMAIN
        assert len(node.input) in (4, 5)
        b, scale, zp = (inits[name] for name in node.input[1:4])
        assert b.data_type == TensorProto.INT8 and len(b.dims) == 2
        assert scale.data_type == TensorProto.FLOAT and list(scale.dims) == [b.dims[1]]  # per column
        assert zp.data_type == TensorProto.INT8 and list(zp.dims) == [b.dims[1]]
        assert not numpy_helper.to_array(zp).any()  # symmetric
        q = numpy_helper.to_array(b)
        assert q.min() >= -63 and q.max() <= 63  # 7-bit by default (no VNNI saturation)
        if len(node.input) == 5:
            bias = inits[node.input[4]]
            assert bias.data_type == TensorProto.FLOAT and list(bias.dims) == [b.dims[1]]
    # Biases were folded: no Add reads a quantised output then a 1-D initializer.
    assert sum(len(n.input) == 5 for n in dq) >= 7
    # The float weights are gone from the file.
    float_bytes = sum(i.raw_data.__len__() for i in int8.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) == 2)
    assert float_bytes < 0.5 * sum(i.raw_data.__len__() for i in fp32.graph.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) == 2)


def test_weight_quantisation_is_symmetric_per_column():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 5)).astype(np.float32) * np.array([1, 10, 0.01, 3, 0], dtype=np.float32)
    for reduce_range, qmax in ((True, 63), (False, 127)):
        q, scale = quantize_weight(w, reduce_range)
        assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (5,)
        assert np.abs(q).max(axis=0)[:4].tolist() == [qmax] * 4  # the largest entry maps to +-qmax
        assert scale[4] == 1.0 and not q[:, 4].any()  # an all-zero column gets a harmless scale
        err = np.abs(q * scale - w)
        assert (err <= scale / 2 + 1e-7).all()  # round to nearest


def _tiny_model(with_gemm_bias=True, alpha=1.0, beta=1.0, trans_b=1):
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((4, 6)).astype(np.float32)
    b1 = rng.standard_normal(6).astype(np.float32)
    w2 = rng.standard_normal((3, 6) if trans_b else (6, 3)).astype(np.float32)
    c2 = rng.standard_normal(3).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1_alias"], ["hb"]),
        helper.make_node("Identity", ["b1"], ["b1_alias"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("Gemm", ["r", "w2"] + (["c2"] if with_gemm_bias else []), ["y"], alpha=alpha, beta=beta, transB=trans_b),
    ]
    # Identity must precede its reader for a valid graph.
    nodes = [nodes[2], nodes[0], nodes[1], nodes[3], nodes[4]]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (c2, "c2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, (w1, b1, w2, c2)


def _dequantised(model, node):
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    w = inits[node.input[1]].astype(np.float32) * inits[node.input[2]]
    bias = inits[node.input[4]] if len(node.input) > 4 else None
    return w, bias


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_attributes_and_aliased_biases_are_folded(trans_b):
    model, (w1, b1, w2, c2) = _tiny_model(alpha=0.5, beta=2.0, trans_b=trans_b)
    stats = quantize_graph(model)
    onnx.checker.check_model(model)
    assert stats["quantized"] == 2 and stats["bias_folded"] == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["DynamicQuantizeMatMul", "Relu", "DynamicQuantizeMatMul"]  # Add and Identity folded away
    first, second = (n for n in model.graph.node if n.op_type == "DynamicQuantizeMatMul")
    assert first.output[0] == "hb" and second.output[0] == "y"
    w, bias = _dequantised(model, first)
    np.testing.assert_allclose(w, w1, atol=np.abs(w1).max(axis=0).max() / 63)
    np.testing.assert_array_equal(bias, b1)
    w, bias = _dequantised(model, second)
    want = 0.5 * (w2.T if trans_b else w2)
    np.testing.assert_allclose(w, want, atol=np.abs(want).max() / 63)
    np.testing.assert_allclose(bias, 2.0 * c2, rtol=1e-6)
    assert {i.name for i in model.graph.initializer}.isdisjoint({"w1", "b1", "w2", "c2"})


def test_matmulinteger_mode_uses_standard_ops_only():
    model, _ = _tiny_model(with_gemm_bias=False)
    stats = quantize_graph(model, op="matmulinteger")
    onnx.checker.check_model(model, full_check=True)
    assert stats["quantized"] == 2
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("DynamicQuantizeLinear") == 2 and ops.count("MatMulInteger") == 2
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    assert all(o.domain in ("", "ai.onnx") for o in model.opset_import)


def test_quantize_file_refuses_a_graph_without_weights(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])], "no_weights",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 2]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
    )
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    with pytest.raises(ValueError, match="no MatMul/Gemm"):
        quantize_file(src, tmp_path / "q.onnx")
    with pytest.raises(ValueError, match="op must be"):
        quantize_graph(onnx.load(str(src)), op="qdq")
