"""QuantKit in its own words: ``quantkit.quantize(model, data, **options)``."""
import csv
import json
import os

from ._errors import QuantKitError
from ._run import run


class QuantizeResult:
    """What ``quantize`` wrote and measured.

    ``model``: the quantized model; ``parameters``: its parameter record (scales, zero points,
    ranges); ``plan``: the precision plan it used (CSV, re-usable with ``plan=``); ``reports``:
    ``{"md", "html", "json"}`` paths of the analysis (empty with ``no_analysis=True``);
    ``summary``: the summary lines by their first word (``{"integer": "4 of 4 Conv/...", ...}``,
    repeated keys as lists); ``outputs``: per model output its metrics (SNR, cosine, top-1
    agreement, worst slice, ...) from the JSON report; ``verdict``; ``warnings``."""

    def __init__(self, completed):
        self.stdout = completed.stdout
        self.warnings = completed.warnings
        self.summary = {}
        for line in completed.stdout.splitlines():
            key, _, value = line.partition(" ")
            if not key or not value.strip():
                continue
            value = value.strip()
            if key in self.summary:
                old = self.summary[key]
                self.summary[key] = (old if isinstance(old, list) else [old]) + [value]
            else:
                self.summary[key] = value
        self.model = self.summary.get("model")
        self.parameters = self.summary.get("parameters")
        self.plan = self.summary.get("plan")
        reports = self.summary.get("report", [])
        reports = reports if isinstance(reports, list) else [reports]
        self.reports = {os.path.splitext(p)[1].lstrip("."): p for p in reports}
        self.verdict = self.summary.get("verdict")
        self.report = None
        self.outputs = {}
        if "json" in self.reports and os.path.exists(self.reports["json"]):
            with open(self.reports["json"]) as f:
                self.report = json.load(f)
            self.outputs = {o["name"]: o["metrics"] for o in self.report.get("outputs", [])}

    def plan_rows(self):
        """The precision plan as a list of dicts (one per op, Icraft's columns plus ``node``)."""
        if not self.plan:
            return []
        with open(self.plan, newline="") as f:
            return list(csv.DictReader(f))

    def __repr__(self):
        return f"QuantizeResult(model={self.model!r}, verdict={self.verdict!r})"


def options_to_arguments(options):
    """``quantkit quantize`` options from keyword arguments: ``weight_rounding="gptq"`` is
    ``--weight-rounding gptq``, ``equalize=True`` is ``--equalize``, ``per_channel_weights=False``
    is ``--no-per-channel-weights``, a list repeats the option (``exclude_node=["a", "b"]``)."""
    args = []
    for key, value in options.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False:
            args.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            for v in value:
                args += [flag, str(v)]
        elif isinstance(value, dict):
            for k, v in value.items():
                args += [flag, f"{k}={v}"]
        else:
            args += [flag, str(value)]
    return args


def quantize(model, data=None, output=None, *, progress=None, **options):
    """Quantizes ``model`` (a path) on ``data`` and analyzes the result.

    ``data``: a ``CalibrationDataReader`` or any iterable of ``{input name: array}`` feeds (streamed
    to the binary as they come, never held), or ``{input name: folder or list file}``, or None
    with ``stats=...``. ``output``: the quantized model (default NAME.q.onnx beside the model).
    ``options``: ``quantkit quantize`` options in Python spelling (``method="kl"``,
    ``target="cosine=0.99"``, ``weight_rounding="gptq"``, ``exclude_node=[...]``,
    ``no_analysis=True``; ``quantkit quantize --help`` lists them). Returns a ``QuantizeResult``;
    raises ``QuantKitError``."""
    args = ["quantize", str(model)]
    if output is not None:
        args += ["-o", str(output)]
    stream = None
    if isinstance(data, dict) and all(isinstance(v, (str, os.PathLike)) for v in data.values()):
        for name, path in data.items():
            args += ["--input", f"{name}={path}"]
    elif isinstance(data, (str, os.PathLike)):
        raise QuantKitError("QK8003", f"data='{data}' is one path; QuantKit needs to know which input it feeds",
                            "pass {input name: folder}, or a reader / iterable of {input name: array} feeds")
    elif data is not None:
        stream = data
    overrides = options.pop("tensor_quant_overrides", None)
    args += options_to_arguments(options)
    if isinstance(overrides, dict):
        import tempfile
        from ._overrides import save
        with tempfile.TemporaryDirectory(prefix="quantkit-") as scratch:
            path = os.path.join(scratch, "overrides.json")
            save(overrides, path)
            return QuantizeResult(run(args + ["--tensor-quant-overrides", path], data=stream, progress=progress))
    if overrides is not None:
        args += ["--tensor-quant-overrides", str(overrides)]
    return QuantizeResult(run(args, data=stream, progress=progress))
