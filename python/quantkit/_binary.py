"""Where the quantkit binary is: ``QUANTKIT_BINARY``, the one bundled in the wheel, or PATH."""
import os
import shutil

from ._errors import QuantKitError

_HERE = os.path.dirname(os.path.abspath(__file__))


def binary_path():
    """The quantkit executable this package runs.

    Order: the ``QUANTKIT_BINARY`` environment variable, the binary bundled in the wheel
    (``quantkit/bin/quantkit``, with the Swift runtime libraries beside it), then ``quantkit``
    on PATH. Raises QK8001 when none is found."""
    env = os.environ.get("QUANTKIT_BINARY")
    if env:
        if os.access(env, os.X_OK):
            return env
        raise QuantKitError("QK8001", f"QUANTKIT_BINARY is '{env}', which is not an executable file",
                            "point QUANTKIT_BINARY at the quantkit binary (swift build -c release writes .build/release/quantkit) or unset it")
    bundled = os.path.join(_HERE, "bin", "quantkit")
    if os.access(bundled, os.X_OK):
        return bundled
    found = shutil.which("quantkit")
    if found:
        return found
    raise QuantKitError("QK8001", "no quantkit binary: the package has none bundled and none is on PATH",
                        "install the wheel built by scripts/build-wheel.sh (it bundles the binary), put quantkit on PATH, or set QUANTKIT_BINARY")
