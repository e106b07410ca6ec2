"""Builds the quantkit wheel: the Python package plus the quantkit binary and the Swift runtime
libraries it links (from the toolchain, found with ldd), for the platform it is built on.

    python3 python/build_wheel.py --binary .build/release/quantkit --out .build/wheel

Written with the standard library only (a wheel is a zip with a .dist-info folder; PEP 427), so
that the set-up needs no build backend from the network. The system libraries the binary links
(OpenBLAS, libjpeg-turbo, libpng) are not bundled: docs/PYTHON.md names their Debian packages."""
import argparse
import base64
import hashlib
import os
import platform
import re
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def version():
    text = open(os.path.join(HERE, "quantkit", "_version.py")).read()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def toolchain_libraries(binary):
    """The shared libraries of the Swift toolchain the binary links (not the system's)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m and "/swift/" in m.group(2):
            libs.append((m.group(1), os.path.realpath(m.group(2))))
    return libs


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build(binary, out_dir):
    ver = version()
    tag = f"py3-none-linux_{platform.machine()}"
    os.makedirs(out_dir, exist_ok=True)
    wheel = os.path.join(out_dir, f"quantkit-{ver}-{tag}.whl")
    dist = f"quantkit-{ver}.dist-info"
    records = []
    tmp = wheel + ".partial"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        def add(name, data, executable=False):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            z.writestr(info, data)
            records.append(record_line(name, data))

        pkg = os.path.join(HERE, "quantkit")
        for f in sorted(os.listdir(pkg)):
            if f.endswith(".py"):
                add(f"quantkit/{f}", open(os.path.join(pkg, f), "rb").read())
        add("quantkit/bin/quantkit", open(binary, "rb").read(), executable=True)
        for soname, path in toolchain_libraries(binary):
            add(f"quantkit/bin/{soname}", open(path, "rb").read())
        metadata = (f"Metadata-Version: 2.1\nName: quantkit\nVersion: {ver}\n"
                    "Summary: Post-training quantization of ONNX models (the quantkit binary, from Python)\n"
                    "Requires-Python: >=3.9\nRequires-Dist: numpy\n")
        add(f"{dist}/METADATA", metadata.encode())
        add(f"{dist}/WHEEL", f"Wheel-Version: 1.0\nGenerator: quantkit build_wheel.py\nRoot-Is-Purelib: false\nTag: {tag}\n".encode())
        add(f"{dist}/top_level.txt", b"quantkit\n")
        records.append(f"{dist}/RECORD,,")
        info = zipfile.ZipInfo(f"{dist}/RECORD", date_time=(2026, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, "\n".join(records) + "\n")
    os.replace(tmp, wheel)
    return wheel


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if not os.access(a.binary, os.X_OK):
        sys.exit(f"build_wheel: {a.binary} is not an executable (swift build -c release first)")
    print(build(a.binary, a.out))
