"""int8 dynamic quantisation of an exported encoder graph, for onnxruntime's CPU provider.

Every MatMul or Gemm whose weight operand is a float32 initializer becomes onnxruntime's
contrib op `com.microsoft.DynamicQuantizeMatMul`: the activation A stays float32 at the
interface and is quantised to uint8 per tensor at run time; the weight B is stored as int8,
symmetric per output column (zero points 0, scale_n = max_k |B[k, n]| / 63, see reduce_range), with the
float bias folded in when the MatMul feeds an `Add` of a 1-D initializer (or the Gemm has C).
Everything else (the patchify Conv, attention's activation x activation MatMuls, LayerNorm,
softmax) stays float32. Graph inputs, outputs and their names are unchanged.

`op="matmulinteger"` writes the same computation with standard ONNX ops instead
(DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul by a_scale * b_scale [-> Add bias]),
for runtimes without the contrib op (onnxruntime's graph optimiser can fuse that pattern back
into DynamicQuantizeMatMul).

`reduce_range` (default True) stores 7-bit weights ([-63, 63]). On x86 CPUs without AVX-512
VNNI the u8 x s8 kernels add pairs of products in int16 with saturation (vpmaddubsw), which
8-bit weights overflow: measured on a 2-core AMD EPYC (AVX2, no VNNI) with a random-weight
ViT-B/16, 8-bit weights gave cosine 0.985 to the fp32 features, 7-bit weights 0.9998, at the
same speed. Pass reduce_range=False (`--full-range`) only for CPUs with VNNI.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS_DOMAIN = "com.microsoft"


def quantize_weight(weight: np.ndarray, reduce_range: bool = True):
    """Symmetric per-column int8: returns (int8 [K, N], float32 scale [N])."""
    qmax = 63.0 if reduce_range else 127.0
    weight = np.asarray(weight, dtype=np.float32)
    amax = np.abs(weight).max(axis=0)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    q = np.clip(np.rint(weight / scale), -qmax, qmax).astype(np.int8)
    return q, scale


class _Names:
    def __init__(self, graph: onnx.GraphProto):
        self.used = {i.name for i in graph.initializer} | {v.name for v in graph.input} | {v.name for v in graph.output}
        for node in graph.node:
            self.used.update(node.output)
            self.used.update(node.input)

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


def quantize_graph(model: onnx.ModelProto, reduce_range: bool = True, op: str = "contrib", min_weight_elements: int = 0) -> dict:
    """Rewrites `model` in place; returns counts of what was converted."""
    if op not in ("contrib", "matmulinteger"):
        raise ValueError(f"op must be 'contrib' or 'matmulinteger', got {op!r}")
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    graph_outputs = {o.name for o in graph.output}
    names = _Names(graph)
    new_inits = []
    removed_nodes = set()  # ids of folded Add nodes
    replaced = {}  # id(node) -> list of replacement nodes
    stats = {"quantized": 0, "bias_folded": 0, "skipped": 0, "weights_int8_bytes": 0, "weights_fp32_bytes": 0}

    # torch.onnx.export stores identical parameters once and recreates the others with Identity
    # nodes (e.g. every zero-initialised out_proj bias): follow those chains to the initializer.
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input}

    def float_init(name: str):
        seen = set()
        while name not in inits and name in alias and name not in seen:
            seen.add(name)
            name = alias[name]
        init = inits.get(name)
        return init if init is not None and init.data_type == TensorProto.FLOAT else None

    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm") or node.domain not in ("", "ai.onnx"):
            continue
        if len(node.input) < 2:
            continue
        w_init = float_init(node.input[1])
        if w_init is None or len(w_init.dims) != 2:
            continue
        weight = numpy_helper.to_array(w_init).astype(np.float32)
        bias = None
        out_name = node.output[0]
        fold_add = None
        if node.op_type == "Gemm":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("transA", 0):
                stats["skipped"] += 1
                continue
            if attrs.get("transB", 0):
                weight = weight.T
            alpha = float(attrs.get("alpha", 1.0))
            beta = float(attrs.get("beta", 1.0))
            weight = weight * alpha
            if len(node.input) > 2 and node.input[2]:
                c_init = float_init(node.input[2])
                c = None if c_init is None else numpy_helper.to_array(c_init).astype(np.float32)
                if c is None or c.size != weight.shape[1] or c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
                    stats["skipped"] += 1  # a non-constant or full-matrix C: leave this Gemm alone
                    continue
                bias = (beta * c.reshape(-1)).astype(np.float32)
        else:
            # MatMul -> Add(bias initializer) with no other reader: fold the bias in.
            users = consumers.get(out_name, [])
            if len(users) == 1 and out_name not in graph_outputs and users[0].op_type == "Add":
                add = users[0]
                other = add.input[1] if add.input[0] == out_name else add.input[0]
                b_init = float_init(other)
                if b_init is not None:
                    b = numpy_helper.to_array(b_init).astype(np.float32)
                    if b.ndim == 1 and b.size == weight.shape[1]:
                        bias, fold_add = b, add
        if weight.size < min_weight_elements:
            stats["skipped"] += 1
            continue
        q, scale = quantize_weight(weight, reduce_range)
        base = w_init.name.replace("::", "_").replace("/", "_").strip("_") or "w"
        q_name = names.fresh(base + "_int8")
        s_name = names.fresh(base + "_scale")
        z_name = names.fresh(base + "_zero_point")
        new_inits += [
            numpy_helper.from_array(q, q_name),
            numpy_helper.from_array(scale, s_name),
            numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), z_name),
        ]
        b_name = ""
        if bias is not None:
            b_name = names.fresh(base + "_bias")
            new_inits.append(numpy_helper.from_array(bias.astype(np.float32), b_name))
        final_out = fold_add.output[0] if fold_add is not None else out_name
        tag = node.name or out_name
        if op == "contrib":
            inputs = [node.input[0], q_name, s_name, z_name] + ([b_name] if b_name else [])
            nodes = [helper.make_node("DynamicQuantizeMatMul", inputs, [final_out], name=names.fresh(tag + "_int8"), domain=MS_DOMAIN)]
        else:
            aq, a_scale, a_zp = (names.fresh(tag + s) for s in ("_a_uint8", "_a_scale", "_a_zero_point"))
            acc, accf, mscale = (names.fresh(tag + s) for s in ("_int32", "_int32_float", "_scale"))
            mm_out = names.fresh(tag + "_dequant") if b_name else final_out
            nodes = [
                helper.make_node("DynamicQuantizeLinear", [node.input[0]], [aq, a_scale, a_zp], name=names.fresh(tag + "_dql")),
                helper.make_node("MatMulInteger", [aq, q_name, a_zp, z_name], [acc], name=names.fresh(tag + "_mmi")),
                helper.make_node("Cast", [acc], [accf], to=TensorProto.FLOAT, name=names.fresh(tag + "_cast")),
                helper.make_node("Mul", [a_scale, s_name], [mscale], name=names.fresh(tag + "_scale_mul")),
                helper.make_node("Mul", [accf, mscale], [mm_out], name=names.fresh(tag + "_dequant_mul")),
            ]
            if b_name:
                nodes.append(helper.make_node("Add", [mm_out, b_name], [final_out], name=names.fresh(tag + "_bias_add")))
        replaced[id(node)] = nodes
        if fold_add is not None:
            removed_nodes.add(id(fold_add))
            stats["bias_folded"] += 1
        stats["quantized"] += 1
        stats["weights_int8_bytes"] += q.nbytes
        stats["weights_fp32_bytes"] += weight.size * 4

    rebuilt = []
    for node in graph.node:
        if id(node) in removed_nodes:
            continue
        rebuilt.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(rebuilt)
    graph.initializer.extend(new_inits)
    # Drop Identity nodes whose output nobody reads any more (aliases of folded biases), then
    # the initializers nothing reads (the float weights and folded biases).
    while True:
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Identity" and n.output[0] not in read]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    keep = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    # Graph inputs that shadowed removed initializers (older exporters list them) go too.
    init_names = {i.name for i in graph.initializer}
    stale = [v for v in graph.input if v.name not in read and v.name not in init_names and v.name in inits]
    for v in stale:
        graph.input.remove(v)
    del graph.value_info[:]  # shapes of removed tensors; onnxruntime re-infers the rest
    if op == "contrib" and stats["quantized"] and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return stats


def quantize_file(src: Path, dst: Path, reduce_range: bool = True, op: str = "contrib") -> dict:
    """Reads an fp32 ONNX graph, writes its int8 dynamic version; returns the counts."""
    model = onnx.load(str(src))
    stats = quantize_graph(model, reduce_range=reduce_range, op=op)
    if stats["quantized"] == 0:
        raise ValueError(f"{src}: no MatMul/Gemm with a float32 weight initializer to quantise")
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="models/quantize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="fp32 ONNX graph (e.g. image_encoder.onnx)")
    p.add_argument("dst", help="int8 graph to write")
    p.add_argument("--full-range", action="store_true", help="8-bit weights (only for CPUs with AVX-512 VNNI / AVX-VNNI)")
    p.add_argument("--op", choices=["contrib", "matmulinteger"], default="contrib")
    args = p.parse_args(argv)
    stats = quantize_file(Path(args.src), Path(args.dst), not args.full_range, args.op)
    print(f"wrote {args.dst}: {stats['quantized']} MatMul/Gemm quantised ({stats['bias_folded']} biases folded), "
          f"weights {stats['weights_fp32_bytes'] / 1e6:.1f} MB -> {stats['weights_int8_bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
