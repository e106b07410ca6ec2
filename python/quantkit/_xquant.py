"""XQuant's entry points, run by QuantKit: ``quantize_onnx_model(config, model, output)`` and
``python -m quantkit -c cfg.json [-i in.onnx -o out.onnx]``."""
import json
import os
import shutil
import tempfile

from ._run import run


def quantize_onnx_model(config, model=None, output=None, *, progress=None):
    """XQuant's ``quantize_onnx_model(config_or_dict, model_or_proto, output)``.

    ``config``: a JSON configuration file in XQuant's layout (or Icraft's TOML), or the same as a
    dict; its relative paths are relative to the current directory, as in XQuant. ``model``: the
    float model (a path or an ``onnx.ModelProto``) when the configuration does not name it;
    ``output``: the quantized model when the configuration does not name it. Returns the
    ``QuantizeResult`` of the run (the analysis report is written unless the configuration turns
    it off)."""
    from ._api import QuantizeResult
    scratch = tempfile.mkdtemp(prefix="quantkit-")
    try:
        if isinstance(config, dict):
            path = os.path.join(scratch, "config.json")
            with open(path, "w") as f:
                json.dump(config, f)
            config = path
        args = ["quantize", "-c", str(config)]
        if model is not None:
            if not isinstance(model, (str, os.PathLike)):
                import onnx
                path = os.path.join(scratch, "model.onnx")
                onnx.save(model, path)
                model = path
            args += ["-i", str(model)]
        if output is not None:
            args += ["-o", str(output)]
        return QuantizeResult(run(args, progress=progress))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
