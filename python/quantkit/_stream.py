"""The calibration stream: what ``quantkit --input-stream`` reads (docs/PYTHON.md, "The stream").

Per batch, one record per model input: a 4-byte little-endian name length, the name in UTF-8 and
one .npy frame (format 1.0, or 2.0 when the header needs it); then an end record, a name length
of 0. Arrays go to the pipe straight from their memory, one batch at a time, so neither side holds
the data set."""
import struct

from ._errors import QuantKitError

_END = struct.pack("<I", 0)


def batches(data):
    """The feeds (``{input name: array}``) of ``data``: an ONNX Runtime
    ``CalibrationDataReader`` (``get_next()`` until None), any iterable of feeds, or a
    function returning one. Nothing is read ahead."""
    if hasattr(data, "get_next"):
        while True:
            feed = data.get_next()
            if feed is None:
                return
            yield feed
    else:
        if callable(data) and not isinstance(data, dict):
            data = data()
        if isinstance(data, dict):
            raise QuantKitError("QK8003", "the calibration data is one dict, not a sequence of them",
                                "pass a CalibrationDataReader, or a list/generator of {input name: array} feeds, one per batch")
        yield from data


def _frame_header(array):
    import numpy as np
    fmt = np.lib.format
    header = fmt.header_data_from_array_1_0(array)
    import io
    buf = io.BytesIO()
    try:
        fmt.write_array_header_1_0(buf, header)
    except ValueError:
        fmt.write_array_header_2_0(buf, header)
    return buf.getvalue()


def write_batch(out, feed, index):
    """Writes one feed to ``out`` (a binary file): its records and the end record."""
    import numpy as np
    if not isinstance(feed, dict) or not feed:
        raise QuantKitError("QK8003", f"calibration batch {index + 1} is {type(feed).__name__}{' (empty)' if isinstance(feed, dict) else ''}, not a dict of input name to array",
                            "make the reader's get_next() return {input name: numpy array} (None at the end)")
    for name, value in feed.items():
        a = np.asarray(value)
        if a.dtype.kind not in "biuf" or a.dtype.itemsize > 8:
            raise QuantKitError("QK8003", f"calibration batch {index + 1}, input '{name}': arrays of dtype {a.dtype} cannot be sent",
                                "convert it to the model input's numeric type (float32, int64, uint8, ...)")
        if not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        a = np.ascontiguousarray(a)
        n = str(name).encode()
        out.write(struct.pack("<I", len(n)) + n + _frame_header(a))
        if a.nbytes:
            out.write(memoryview(a).cast("B"))
    out.write(_END)
