#!/usr/bin/env bash
# Installs what QuantKit's build and tests need, idempotently: Debian packages and a Python
# venv (.venv) with the outside referees (onnx, onnxruntime, numpy, pytest, Pillow).
# Run as root or with sudo on Debian/Ubuntu.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
APT_PACKAGES=(libopenblas-dev libturbojpeg0-dev libpng-dev python3-venv unzip dataset-fashion-mnist fonts-dejavu-core time chromium)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v swift >/dev/null || { echo "setup: the Swift 6.3 toolchain is not on PATH (see README)"; exit 1; }

venv=$here/.venv
stamp=$venv/.quantkit-requirements
req="onnx==1.23.2 onnxruntime==1.23.2 numpy pytest pillow soundfile"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$req" ]; then
  echo "setup: installing Python referees into .venv ($req)"
  "$venv/bin/pip" install -q --disable-pip-version-check $req
  echo "$req" > "$stamp"
fi
