"""Export to ONNX: a trained network as an ONNX graph that ONNX Runtime (or any ONNX runtime)
runs without JAX or jaxbp.

The graph is built directly from the weights with the `onnx` package (`pip install
"jaxbp[export]"`), opset 17, float32:

    X (N, n_0) float32
    [ (X − mean) / scale ]                      the training rows' standardiser (CLI models)
    H^l = g(Gemm(H^{l-1}, W^l, b^l, transB=1))  one per layer: H^{l-1} (W^l)ᵀ + b^lᵀ, row-major
    classification: probabilities (N, k)        softmax; [1 − a, a] for one sigmoid output;
                                                one sigmoid per label (multilabel) or divided
                                                by the row's sum (several sigmoids)
                    label (N,)                  classes[argmax] (multilabel: (N, k) 0/1)
    regression:     variable (N, k)             the outputs [· target_scale + target_mean]

The output names are skl2onnx's ("label" and "probabilities"; "variable"), so code that serves
a converted scikit-learn MLP serves this file unchanged. Where the network has an identity
output but classes, "probabilities" is left out (the outputs are no probabilities) and the
label is the argmax (for one output: 1 where it is above 0.5), as jaxbp predicts.
"""

import numpy as np

from jaxbp.activations import LEAKY_SLOPE

OPSET = 17
_SIMPLE = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softplus": "Softplus"}


def onnx_model(net, params, *, classes=None, multilabel=False, mean=None, scale=None,
               target_mean=None, target_scale=None, feature_names=None, doc=""):
    """The ONNX `ModelProto` of `net` with `params` (jaxbp's (W (n_l, n_{l-1}), b (n_l, 1))
    pairs, host or device arrays). `classes` (one label per output; two for a single sigmoid
    output) makes it a classifier, else a regression. `mean`/`scale` standardise the inputs
    first, `target_mean`/`target_scale` map a regression's outputs back. `feature_names`
    (the columns the input takes, in order) go into the model's metadata."""
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'jaxbp[export]' "
                          "(or pip install onnx)") from None
    from onnx import TensorProto, helper

    g = _Graph()
    n_0 = net.sizes[0]
    H = "X"
    if mean is not None:
        H = g.op("Div", [g.op("Sub", [H, g.const("mean", mean)]), g.const("scale", scale)])
    for l, (W, b) in enumerate(params, start=1):
        Z = g.op("Gemm", [H, g.const(f"W{l}", W), g.const(f"b{l}", np.reshape(b, -1))],
                 transB=1)
        H = _activation(g, net.hidden, Z) if l < net.L else Z
    outputs = (_regression(g, H, target_mean, target_scale) if classes is None
               else _classification(g, net, H, np.asarray(classes), multilabel))
    graph = helper.make_graph(
        g.nodes, "jaxbp_mlp",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", n_0])],
        [helper.make_tensor_value_info(name, kind, shape) for name, kind, shape in outputs],
        initializer=g.initializers)
    model = helper.make_model(graph, producer_name="jaxbp", doc_string=doc,
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # ONNX 1.10+, ONNX Runtime 1.10+
    if feature_names is not None:
        helper.set_model_props(model, {"feature_names": ",".join(feature_names)})
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model, path):
    """Write `model` to `path` atomically (a temporary file renamed into place)."""
    import os
    import pathlib

    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(model.SerializeToString())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Graph:
    """Nodes and constant tensors (float32 unless given a dtype), named as they are added."""

    def __init__(self):
        self.nodes, self.initializers, self._count = [], [], 0

    def const(self, name, value, dtype=np.float32):
        """A constant; `dtype` None keeps the value's own (class labels)."""
        from onnx import numpy_helper

        value = np.asarray(value, dtype)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, kind, inputs, output=None, **attributes):
        from onnx import helper

        self._count += 1
        output = output or f"{kind.lower()}_{self._count}"
        self.nodes.append(helper.make_node(kind, inputs, [output], **attributes))
        return output


def _activation(g, name, Z):
    """g(Z) for jaxbp's hidden activation `name`."""
    if name == "identity":
        return Z
    if name in _SIMPLE:
        return g.op(_SIMPLE[name], [Z])
    if name == "leaky_relu":
        return g.op("LeakyRelu", [Z], alpha=LEAKY_SLOPE)
    if name == "gelu":  # 0.5 z (1 + erf(z / √2)), the exact form jaxbp uses (Gelu is opset 20)
        erf = g.op("Erf", [g.op("Mul", [Z, g.const(f"inv_sqrt2_{Z}", 1 / np.sqrt(2.0))])])
        one_plus = g.op("Add", [erf, g.const(f"one_{Z}", 1.0)])
        return g.op("Mul", [g.op("Mul", [Z, one_plus]), g.const(f"half_{Z}", 0.5)])
    raise ValueError(f"net.hidden: no ONNX form for the activation {name!r} (registered with "
                     f"jaxbp.register_activation); export supports {_EXPORTABLE}")


_EXPORTABLE = ["identity", *_SIMPLE, "leaky_relu", "gelu"]


def _regression(g, Z, target_mean, target_scale):
    from onnx import TensorProto

    if target_mean is not None:
        Z = g.op("Add", [g.op("Mul", [Z, g.const("target_scale", target_scale)]),
                         g.const("target_mean", target_mean)])
    g.op("Identity", [Z], "variable")
    return [("variable", TensorProto.FLOAT, ["N", None])]


def _classification(g, net, Z, classes, multilabel):
    from onnx import TensorProto

    output, n_L = net.output, net.sizes[-1]
    labels = _label_tensor(classes)
    if output == "identity":  # no probabilities: the label from the outputs themselves
        if n_L == 1:
            ids = g.op("Cast", [g.op("Greater", [Z, g.const("half", 0.5)])], to=TensorProto.INT64)
            ids = g.op("Squeeze", [ids, g.const("axis1", [1], np.int64)])
        else:
            ids = g.op("ArgMax", [Z], axis=1, keepdims=0)
        g.op("Gather", [g.const("classes", labels, None), ids], "label")
        return [("label", _onnx_type(labels), ["N"])]
    if output == "softmax":
        P = g.op("Softmax", [Z], "probabilities", axis=1)
    elif multilabel:
        P = g.op("Sigmoid", [Z], "probabilities")
    elif n_L == 1:  # [1 − a, a]
        a = g.op("Sigmoid", [Z])
        P = g.op("Concat", [g.op("Sub", [g.const("one", 1.0), a]), a], "probabilities", axis=1)
    else:  # several sigmoids, one per class: divided by the row's sum
        S = g.op("Sigmoid", [Z])
        P = g.op("Div", [S, g.op("ReduceSum", [S, g.const("axis1", [1], np.int64)],
                                 keepdims=1)], "probabilities")
    probabilities = ("probabilities", TensorProto.FLOAT, ["N", len(classes)])
    if multilabel:  # 1 where a label's probability is above 0.5, as scikit-learn's predict
        g.op("Cast", [g.op("Greater", [P, g.const("half", 0.5)])], "label", to=TensorProto.INT64)
        return [("label", TensorProto.INT64, ["N", n_L]), probabilities]
    ids = g.op("ArgMax", [P], axis=1, keepdims=0)
    g.op("Gather", [g.const("classes", labels, None), ids], "label")
    return [("label", _onnx_type(labels), ["N"]), probabilities]


def _label_tensor(classes):
    """The class labels as an array ONNX stores: int64, float64, bool, or strings."""
    kind = classes.dtype.kind
    if kind in "iu":
        return classes.astype(np.int64)
    if kind == "f":
        return classes.astype(np.float64)
    if kind == "b":
        return classes
    return np.array([str(c) for c in classes], dtype=object)


def _onnx_type(labels):
    from onnx import TensorProto, helper

    if labels.dtype == object:
        return TensorProto.STRING
    return helper.np_dtype_to_tensor_dtype(labels.dtype)
