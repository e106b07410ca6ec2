"""ONNX Runtime's ``quantize_static``, run by QuantKit: the same arguments and enums, mapped to
QuantKit's settings; what has no equivalent raises QK8002 instead of being ignored.

    from onnxruntime.quantization import quantize_static, QuantType   # before
    from quantkit import quantize_static, QuantType                   # after
"""
import enum
import os
import shutil
import tempfile

from ._errors import QuantKitError
from ._overrides import _plain
from ._run import run

try:  # the same enum objects as ONNX Runtime's when it is installed
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
except ImportError:  # the same names and values otherwise
    class QuantType(enum.Enum):
        QInt8 = 0
        QUInt8 = 1
        QFLOAT8E4M3FN = 2
        QInt16 = 3
        QUInt16 = 4
        QInt4 = 5
        QUInt4 = 6

    class QuantFormat(enum.Enum):
        QOperator = 0
        QDQ = 1

    class CalibrationMethod(enum.Enum):
        MinMax = 0
        Entropy = 1
        Percentile = 2
        Distribution = 3

    class CalibrationDataReader:
        """ONNX Runtime's reader interface: ``get_next()`` returns a feed or None."""

        def get_next(self):
            raise NotImplementedError

        def __iter__(self):
            return self

        def __next__(self):
            feed = self.get_next()
            if feed is None:
                raise StopIteration
            return feed


def _member(value, enum_type, argument):
    """An enum member of ``enum_type`` by member, name ("QInt8", "QDQ", "MinMax") or value."""
    if isinstance(value, enum.Enum):
        value = value.name
    if isinstance(value, str):
        for m in enum_type:
            if m.name.lower() == value.lower():
                return m.name
    elif isinstance(value, int):
        for m in enum_type:
            if m.value == value:
                return m.name
    names = ", ".join(m.name for m in enum_type)
    raise QuantKitError("QK8002", f"{argument}={value!r} is not one of {names}", f"use one of {names}")


def _unsupported(what, fix):
    raise QuantKitError("QK8002", f"{what} has no QuantKit equivalent", fix)


# extra_options that change nothing in QuantKit's output (memory or speed hints of ONNX Runtime's
# calibrator: QuantKit streams with flat memory anyway).
_NEUTRAL = {"CalibStridedMinMax", "CalibMaxIntermediateOutputs"}


def onnxruntime_arguments(model_input, quant_format=None, op_types_to_quantize=None, per_channel=False, reduce_range=False,
                          activation_type=None, weight_type=None, nodes_to_quantize=None, nodes_to_exclude=None,
                          calibrate_method=None, extra_options=None):
    """The ``quantkit quantize`` options equivalent to ``quantize_static``'s arguments (without
    the model, output and data). ``model_input`` is read only when op types or nodes to quantize
    are listed (to exclude the others)."""
    args = []
    extra = dict(extra_options or {})
    fmt = _member(quant_format if quant_format is not None else "QDQ", QuantFormat, "quant_format")
    if fmt == "QOperator":
        args += ["--format", "qoperator"]
    act = _member(activation_type if activation_type is not None else "QInt8", QuantType, "activation_type")
    wt = _member(weight_type if weight_type is not None else "QInt8", QuantType, "weight_type")
    act_sym = bool(extra.pop("ActivationSymmetric", False))
    w_sym = extra.pop("WeightSymmetric", None)
    # Activations: ONNX Runtime's int8 is asymmetric (a zero point) unless ActivationSymmetric.
    acts = {("QInt8", False): "asym_s", ("QInt8", True): "s8", ("QUInt8", False): "u8", ("QInt16", True): "s16",
            ("QUInt16", False): "u16", ("QFLOAT8E4M3FN", False): "e4m3fn", ("QFLOAT8E4M3FN", True): "e4m3fn"}
    if (act, act_sym) not in acts:
        _unsupported(f"activation_type={act} with ActivationSymmetric={act_sym}",
                     "QuantKit's activations are QInt8 (symmetric or not), QUInt8 (asymmetric), QInt16 (symmetric), QUInt16 (asymmetric) or QFLOAT8E4M3FN")
    args += ["--activations", acts[(act, act_sym)]]
    if wt == "QFLOAT8E4M3FN":
        if act != "QFLOAT8E4M3FN":
            _unsupported("weight_type=QFLOAT8E4M3FN with integer activations", "use QFLOAT8E4M3FN for both, or integer weights")
    elif act == "QFLOAT8E4M3FN":
        _unsupported(f"activation_type=QFLOAT8E4M3FN with weight_type={wt}", "use QFLOAT8E4M3FN for both (QuantKit's float8 models)")
    elif wt in ("QInt16", "QUInt16"):
        _unsupported(f"weight_type={wt}", "QuantKit's weights have 2 to 8 bits: use QInt8 (or QInt4); int16 activations with int8 weights are activation_type=QInt16")
    else:
        signed = wt in ("QInt8", "QInt4")
        symmetric = signed if w_sym is None else bool(w_sym)
        if not signed and symmetric:
            _unsupported(f"weight_type={wt} with WeightSymmetric=True", "use QInt8/QInt4 for symmetric weights")
        args += ["--weight-mode", "sym" if symmetric else "asym_s" if signed else "asym_u"]
        if wt in ("QInt4", "QUInt4"):
            args += ["--weight-bits", "4", "--pack-weights"]
    if not per_channel:
        args.append("--no-per-channel-weights")
    if reduce_range:
        args += ["--value-range", "7;8"]
    method = _member(calibrate_method if calibrate_method is not None else "MinMax", CalibrationMethod, "calibrate_method")
    if method == "MinMax":
        if extra.pop("CalibMovingAverage", False):
            _unsupported("CalibMovingAverage=True", "QuantKit's 'avg' method averages each batch's min and max without the exponential weighting; pass calibrate_method='MinMax' without it, or use quantkit.quantize(method='avg')")
        extra.pop("CalibMovingAverageConstant", None)
        args += ["--method", "minmax"]
    elif method == "Entropy":
        args += ["--method", "entropy"]
        if "CalibNumBins" in extra:
            args += ["--bins", str(int(extra.pop("CalibNumBins")))]
    elif method == "Percentile":
        pct = float(extra.pop("CalibPercentile", 99.999))
        args += ["--method", "percentile", "--percentile", repr(pct / 100)]
        if "CalibNumBins" in extra:
            args += ["--bins", str(int(extra.pop("CalibNumBins")))]
    else:
        _unsupported("calibrate_method=Distribution", "use Entropy, Percentile or MinMax (or QuantKit's mse/kl_v2 with quantkit.quantize)")
    if extra.pop("SmoothQuant", False):
        args += ["--smoothquant", repr(float(extra.pop("SmoothQuantAlpha", 0.5)))]
    extra.pop("SmoothQuantAlpha", None)
    if extra.pop("SmoothQuantFolding", True) is False:
        _unsupported("SmoothQuantFolding=False", "QuantKit always folds SmoothQuant's factors where a producer can take them")
    overrides = extra.pop("TensorQuantOverrides", None)
    if overrides:
        args += ["--tensor-quant-overrides", overrides]
    for key in list(extra):
        if key in _NEUTRAL:
            extra.pop(key)
    if extra:
        key = sorted(extra)[0]
        _unsupported(f"extra_options['{key}']", "drop it: QuantKit writes the QDQ layout ONNX Runtime fuses; docs/PYTHON.md lists each extra option and what QuantKit does")
    excluded = list(nodes_to_exclude or [])
    if op_types_to_quantize or nodes_to_quantize:
        graph = _load(model_input).graph
        if op_types_to_quantize:
            keep = set(op_types_to_quantize)
            for t in sorted({n.op_type for n in graph.node} - keep):
                args += ["--exclude-op-type", t]
        if nodes_to_quantize:
            keep = set(nodes_to_quantize)
            unnamed = [n.op_type for n in graph.node if not n.name]
            if unnamed:
                _unsupported(f"nodes_to_quantize with unnamed nodes ({unnamed[0]})", "name every node, or use op_types_to_quantize / nodes_to_exclude")
            excluded += [n.name for n in graph.node if n.name not in keep]
    for n in excluded:
        args += ["--exclude-node", n]
    return args


def _load(model):
    import onnx
    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)


def quantize_static(model_input, model_output, calibration_data_reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=None,
                    per_channel=False, reduce_range=False, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    nodes_to_quantize=None, nodes_to_exclude=None, use_external_data_format=False,
                    calibrate_method=CalibrationMethod.MinMax, calibration_providers=None, extra_options=None, *, progress=None):
    """ONNX Runtime's ``quantize_static`` (same arguments, same defaults), done by QuantKit.

    Writes ``model_output`` (the QDQ model, or with ``QuantFormat.QOperator`` the deploy model
    of QLinear operators) and, beside it, QuantKit's parameter record and precision plan. The
    reader's feeds stream to the quantkit binary as they are produced. QuantKit's repairs that
    need no option (BatchNorm folding, bias correction of depthwise Convs, the QDQ layout ONNX
    Runtime fuses) apply; the analysis report is not written (use ``quantkit.quantize`` for it).
    ``calibration_providers`` is accepted and ignored (QuantKit calibrates on the CPU);
    ``use_external_data_format`` is honoured by QuantKit on its own (models over 2 GB are
    written with external data). Raises ``QuantKitError`` (QK8002 for an argument with no
    equivalent)."""
    args = onnxruntime_arguments(model_input, quant_format, op_types_to_quantize, per_channel, reduce_range, activation_type,
                                 weight_type, nodes_to_quantize, nodes_to_exclude, calibrate_method, extra_options)
    overrides_file = None
    scratch = tempfile.mkdtemp(prefix="quantkit-")
    try:
        if "--tensor-quant-overrides" in args:
            import json
            i = args.index("--tensor-quant-overrides")
            overrides_file = os.path.join(scratch, "overrides.json")
            with open(overrides_file, "w") as f:
                json.dump(_plain(args[i + 1]), f)
            args[i + 1] = overrides_file
        model_path = str(model_input)
        if not isinstance(model_input, (str, os.PathLike)):
            import onnx
            model_path = os.path.join(scratch, "model.onnx")
            onnx.save(model_input, model_path)
        output = str(model_output)
        qop = "--format" in args
        target = os.path.join(scratch, "out.onnx") if qop else output
        run(["quantize", model_path, "-o", target, "--no-analysis", *args], data=calibration_data_reader, progress=progress)
        if qop:
            shutil.move(os.path.join(scratch, "out.qop.onnx"), output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
