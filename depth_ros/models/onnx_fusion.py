"""Attention fusion for ONNX Runtime: the exported ViT attention as one ``com.microsoft.MultiHeadAttention``.

The exported files keep attention as standard operators (MatMul, Softmax, ...), so that TensorRT and
``trtexec`` read them and fuse attention themselves. ONNX Runtime's CPU and CUDA providers do not fuse
this pattern on their own; they run it as separate kernels that write the full N x heads x S x S score
tensor to memory several times. ``fuse_attention`` rewrites each attention block of a loaded graph into
ONNX Runtime's fused kernel (on the CPU: scores computed and normalised per head in cache; on CUDA: flash
or memory-efficient attention). The file on disk is not changed; the backend applies this in memory when
no TensorRT provider is requested (a contrib operator would split a TensorRT engine at every block).

Pattern (PyTorch's export of ``F.scaled_dot_product_attention`` after a timm-style packed projection,
in both Depth Pro's ViTs and ZoeDepth's BEiT)::

    qkv (B, S, 3D) -> Reshape (B, S, 3, H, D/H) -> Transpose (2, 0, 3, 1, 4) -> Split axis 0 -> Squeeze x3
    q * s, Transpose(k) * s -> MatMul [-> Add bias] -> Softmax(-1) -> MatMul v
    -> Transpose (0, 2, 1, 3) -> Reshape (B, S, D)

with ``s = sqrt(1 / sqrt(D/H))`` computed from q's shape (the default scale) or a scalar constant on q
alone. It becomes ``Split(qkv, 3, axis -1) -> MultiHeadAttention(q, k, v, attention_bias)``. Anything that
does not match exactly is left as it is.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import numpy as np

__all__ = ["fuse_attention", "CONTRIB_DOMAIN"]

CONTRIB_DOMAIN = "com.microsoft"


class _Graph:
    def __init__(self, graph):
        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output if o}
        self.consumers: Dict[str, List] = defaultdict(list)
        for n in graph.node:
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
        self.initializers = {t.name: t for t in graph.initializer}
        self.outputs = {o.name for o in graph.output}

    def node(self, tensor: str, op: str):
        n = self.producer.get(tensor)
        return n if n is not None and n.op_type == op else None

    def only_consumer(self, tensor: str, op: str):
        c = self.consumers.get(tensor, [])
        return c[0] if len(c) == 1 and c[0].op_type == op and tensor not in self.outputs else None

    def const(self, tensor: str) -> Optional[np.ndarray]:
        from onnx import numpy_helper

        if tensor in self.initializers:
            return numpy_helper.to_array(self.initializers[tensor])
        n = self.producer.get(tensor)
        if n is not None and n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _scalar(arr: Optional[np.ndarray]) -> Optional[float]:
    return float(arr.reshape(-1)[0]) if arr is not None and arr.size == 1 else None


def _skip_cast(g: _Graph, tensor: str) -> str:
    n = g.node(tensor, "Cast")
    return n.input[0] if n is not None else tensor


def _is_default_scale(g: _Graph, tensor: str) -> bool:
    """``Sqrt(Cast?(Div(1, Sqrt(Cast?(Slice(Shape(q), -1))))))``: sqrt of PyTorch's default 1/sqrt(head dim)."""
    outer = g.node(tensor, "Sqrt")
    div = g.node(_skip_cast(g, outer.input[0]), "Div") if outer is not None else None
    if div is None or _scalar(g.const(div.input[0])) != 1.0:
        return False
    inner = g.node(_skip_cast(g, div.input[1]), "Sqrt")
    sl = g.node(_skip_cast(g, inner.input[0]), "Slice") if inner is not None else None
    return sl is not None and g.node(sl.input[0], "Shape") is not None and _scalar(g.const(sl.input[1])) == -1


def _split_scale(g: _Graph, tensor: str) -> Tuple[Optional[str], Optional[object]]:
    """(unscaled tensor, scale): scale 'default' for the shape-derived sqrt factor, a float for a constant,
    None when ``tensor`` is not a Mul."""
    mul = g.node(tensor, "Mul")
    if mul is None:
        return tensor, None
    for a, b in ((0, 1), (1, 0)):
        c = _scalar(g.const(mul.input[b]))
        if c is not None:
            return mul.input[a], c
        if _is_default_scale(g, mul.input[b]):
            return mul.input[a], "default"
    return None, None


def _qkv_source(g: _Graph, tensor: str, index: int):
    """The packed projection (B, S, 3D) that ``tensor`` is part ``index`` of, and the Reshape's heads."""
    sq = g.node(tensor, "Squeeze")
    if sq is None:
        return None
    split = g.producer.get(sq.input[0])
    if split is None or split.op_type != "Split" or _attr(split, "axis", 0) != 0 or len(split.output) != 3 \
            or split.output[index] != sq.input[0]:
        return None
    tr = g.node(split.input[0], "Transpose")
    if tr is None or list(_attr(tr, "perm", [])) != [2, 0, 3, 1, 4]:
        return None
    rs = g.node(tr.input[0], "Reshape")
    shape = g.node(rs.input[1], "Concat") if rs is not None else None
    if shape is None or len(shape.input) != 5:
        return None
    three, heads = _scalar(g.const(shape.input[2])), _scalar(g.const(shape.input[3]))
    if three != 3 or heads is None:
        return None
    return rs.input[0], int(heads), split


def _match(g: _Graph, softmax):
    """The pieces of one attention block ending in ``softmax``, or None."""
    if _attr(softmax, "axis", -1) not in (-1, 3):
        return None
    scores, bias = softmax.input[0], None
    add = g.node(scores, "Add")
    if add is not None:
        for a, b in ((0, 1), (1, 0)):
            if g.node(add.input[a], "MatMul") is not None:
                scores, bias = add.input[a], add.input[b]
                break
        else:
            return None
        if g.only_consumer(scores, "Add") is None:
            return None
    mm1 = g.node(scores, "MatMul")
    if mm1 is None or (bias is None and g.only_consumer(scores, "Softmax") is None):
        return None
    q, q_scale = _split_scale(g, mm1.input[0])
    kt, k_scale = _split_scale(g, mm1.input[1])
    if q is None or kt is None:
        return None
    if q_scale == "default" and k_scale == "default":
        scale = None
    elif isinstance(q_scale, float) and k_scale is None:
        scale = q_scale
    else:
        return None
    tk = g.node(kt, "Transpose")
    if tk is None or list(_attr(tk, "perm", [])) != [0, 1, 3, 2]:
        return None
    mm2 = g.only_consumer(softmax.output[0], "MatMul")
    if mm2 is None or mm2.input[0] != softmax.output[0]:
        return None
    to = g.only_consumer(mm2.output[0], "Transpose")
    if to is None or list(_attr(to, "perm", [])) != [0, 2, 1, 3]:
        return None
    out = g.only_consumer(to.output[0], "Reshape")
    if out is None:
        return None
    src = [_qkv_source(g, t, i) for i, t in enumerate((q, tk.input[0], mm2.input[1]))]
    if any(s is None for s in src) or len({(s[0], s[1], s[2].name) for s in src}) != 1:
        return None
    qkv, heads, _ = src[0]
    return {"qkv": qkv, "heads": heads, "scale": scale, "bias": bias, "reshape": out}


def _prune(g) -> None:
    """Drop nodes whose outputs nothing uses (repeatedly), and initializers nothing reads."""
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input if i} | outputs
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input if i}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)


def fuse_attention(model) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``, changed in place) as described in the module docstring;
    returns how many attention blocks were fused (0: the model is unchanged)."""
    from onnx import TensorProto, helper

    g = _Graph(model.graph)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    found = [m for m in (_match(g, n) for n in list(model.graph.node) if n.op_type == "Softmax") if m is not None]
    if not found:
        return 0
    nodes = model.graph.node
    for i, m in enumerate(found):
        old = m["reshape"]
        pos = list(nodes).index(old)
        prefix = f"/fused_attention_{i}"
        q, k, v = (f"{prefix}/{n}" for n in "qkv")
        new = []
        split_kw = {"num_outputs": 3} if opset >= 18 else {}
        new.append(helper.make_node("Split", [m["qkv"]], [q, k, v], name=f"{prefix}/Split", axis=-1, **split_kw))
        inputs = [q, k, v]
        if m["bias"] is not None:
            # attention_bias is (1 or B, heads, S, S); the exported bias may lack the batch axis
            shp, one, full, b4 = (f"{prefix}/{n}" for n in ("bias_shape", "one", "bias_full_shape", "bias4d"))
            new.append(helper.make_node("Shape", [m["bias"]], [shp], name=f"{prefix}/BiasShape", start=-3))
            new.append(helper.make_node("Constant", [], [one], name=f"{prefix}/One",
                                        value=helper.make_tensor(one, TensorProto.INT64, [1], [1])))
            new.append(helper.make_node("Concat", [one, shp], [full], name=f"{prefix}/BiasConcat", axis=0))
            new.append(helper.make_node("Reshape", [m["bias"], full], [b4], name=f"{prefix}/BiasReshape"))
            inputs += ["", "", b4]   # 3 bias, 4 key_padding_mask, 5 attention_bias
        kw = {"num_heads": m["heads"]}
        if m["scale"] is not None:
            kw["scale"] = float(m["scale"])
        new.append(helper.make_node("MultiHeadAttention", inputs, [old.output[0]], name=f"{prefix}/MHA",
                                    domain=CONTRIB_DOMAIN, **kw))
        nodes.remove(old)
        for j, n in enumerate(new):
            nodes.insert(pos + j, n)
    _prune(model.graph)
    if not any(o.domain == CONTRIB_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(CONTRIB_DOMAIN, 1))
    return len(found)
