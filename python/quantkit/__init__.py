"""QuantKit from Python: post-training quantization of ONNX models by the quantkit binary.

- ``quantize_static(...)``: ONNX Runtime's call, same arguments and enums (change the import).
- ``quantize_onnx_model(config, model, output)``: XQuant's call; ``python -m quantkit -c cfg.json``.
- ``quantize(model, data, **options)``: QuantKit's own, returning the paths and numbers.

Calibration feeds stream to the binary through a pipe (no temporary files, flat memory); errors
raise ``QuantKitError`` with QuantKit's stable code. docs/PYTHON.md has the details."""
from ._version import __version__
from ._errors import QuantKitError
from ._binary import binary_path
from ._api import QuantizeResult, options_to_arguments, quantize
from ._ort import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, onnxruntime_arguments, quantize_static
from ._xquant import quantize_onnx_model
from ._overrides import tensor_quant_overrides
from ._overrides import load as load_tensor_quant_overrides
from ._overrides import save as save_tensor_quant_overrides

__all__ = ["__version__", "QuantKitError", "binary_path", "QuantizeResult", "options_to_arguments", "quantize",
           "CalibrationDataReader", "CalibrationMethod", "QuantFormat", "QuantType", "onnxruntime_arguments", "quantize_static",
           "quantize_onnx_model", "tensor_quant_overrides", "load_tensor_quant_overrides", "save_tensor_quant_overrides"]
