"""ONNX Runtime's TensorQuantOverrides, to and from QuantKit.

``tensor_quant_overrides(parameters)`` turns QuantKit's parameter record (NAME.qparams.json)
into the dict ONNX Runtime's ``quantize_static`` takes as ``extra_options["TensorQuantOverrides"]``:
each activation's type, scale and zero point, each weight's type and axis. ``save`` and ``load``
write and read it as JSON (``quantkit quantize --tensor-quant-overrides FILE`` reads that file;
``quantkit.quantize_static`` passes the dict through)."""
import enum
import json

_TYPES = {"int8": "QInt8", "uint8": "QUInt8", "int16": "QInt16", "uint16": "QUInt16", "int4": "QInt4", "uint4": "QUInt4",
          "float8e4m3fn": "QFLOAT8E4M3FN"}
_NUMPY = {"QInt8": "int8", "QUInt8": "uint8", "QInt16": "int16", "QUInt16": "uint16", "QInt4": "int8", "QUInt4": "uint8",
          "QFLOAT8E4M3FN": "float32"}


def _quant_type(name):
    from ._ort import QuantType
    return QuantType[name]


def tensor_quant_overrides(parameters, float_model=None):
    """The TensorQuantOverrides of a QuantKit run, as ONNX Runtime's quantizer takes them.

    ``parameters``: the run's parameter record (path, or the loaded dict). ``float_model``: the
    float model (path or ModelProto) the other team quantizes; when given, only its tensors are
    kept (QuantKit's folded weights and the tensors it adds have no counterpart there). Values
    are ONNX Runtime's: ``QuantType`` members, float32 scales, zero points of the type's dtype.
    Tensors of a type ONNX Runtime has no QuantType for (float8 e5m2, 2/3-bit grids) are left out."""
    import numpy as np
    record = parameters if isinstance(parameters, dict) else json.load(open(parameters))
    names = None
    if float_model is not None:
        import onnx
        m = float_model if isinstance(float_model, onnx.ModelProto) else onnx.load(str(float_model), load_external_data=False)
        names = {i.name for i in m.graph.initializer} | {o for n in m.graph.node for o in n.output} | {i.name for i in m.graph.input}
    out = {}
    for name, t in sorted(record["tensors"].items()):
        if names is not None and name not in names:
            continue
        qt = _TYPES.get(t.get("dtype"))
        if qt is None:
            continue
        if t["role"] == "activation":
            zp = np.array(t["zeroPoint"][0], dtype=_NUMPY[qt]) if qt != "QFLOAT8E4M3FN" else np.array(0, dtype=np.float32)
            out[name] = [{"quant_type": _quant_type(qt), "scale": np.array(t["scale"][0], dtype=np.float32), "zero_point": zp}]
        elif t["role"] == "weight":
            entry = {"quant_type": _quant_type(qt), "symmetric": all(z == 0 for z in t.get("zeroPoint", [0]))}
            if "axis" in t:
                entry["axis"] = t["axis"]
            out[name] = [entry]
    return out


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.name
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def save(overrides, path):
    """Writes TensorQuantOverrides (QuantType members as their names, arrays as numbers) as JSON."""
    with open(path, "w") as f:
        json.dump(_plain(overrides), f, indent=1, sort_keys=True)


def load(path):
    """Reads a TensorQuantOverrides JSON file into the dict ONNX Runtime takes (QuantType
    members, float32 scales, zero points of the type's dtype)."""
    import numpy as np
    raw = json.load(open(path))
    out = {}
    for name, entries in raw.items():
        conv = []
        for e in entries if isinstance(entries, list) else [entries]:
            e = dict(e)
            qt = e.get("quant_type")
            if isinstance(qt, str):
                qt = qt.split(".")[-1]
                e["quant_type"] = _quant_type(qt)
            if "scale" in e:
                e["scale"] = np.array(e["scale"], dtype=np.float32)
            if "zero_point" in e:
                e["zero_point"] = np.array(e["zero_point"], dtype=_NUMPY.get(e["quant_type"].name if qt else "QUInt8", "uint8"))
            conv.append(e)
        out[name] = conv
    return out
