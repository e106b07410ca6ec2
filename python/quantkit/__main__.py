"""``python -m quantkit -c cfg.json [-i in.onnx -o out.onnx]`` (XQuant's command line), or
``python -m quantkit SUBCOMMAND ...`` for any quantkit command."""
import os
import subprocess
import sys

from ._binary import binary_path
from ._errors import QuantKitError

SUBCOMMANDS = {"quantize", "calibrate", "analyze", "inspect", "run", "bench", "convert", "data-preview", "export-all-outputs", "help"}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS and not argv[0].startswith("--version"):
        argv = ["quantize", *argv]  # XQuant's `python -m xquant -c cfg.json`
    try:
        binary = binary_path()
    except QuantKitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    return subprocess.call([binary, *argv], env=env)


if __name__ == "__main__":
    sys.exit(main())
