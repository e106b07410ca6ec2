#!/usr/bin/env bash
# Installs what QuantKit's build and tests need, idempotently: Debian packages and a Python
# venv (.venv) with the outside referees (onnx, onnxruntime, numpy, pytest, Pillow), every version
# pinned.
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
# Every referee version is pinned in scripts/requirements-referees.txt; the stamp records the file
# and the Python it was installed for, and any change rebuilds the venv from nothing, so that no
# package of an earlier pin set stays behind.
want="$(python3 -c 'import sys; print(sys.version.split()[0])') $(sha256sum "$here/scripts/requirements-referees.txt" | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: (re)building .venv with the pinned referees (scripts/requirements-referees.txt)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$here/scripts/requirements-referees.txt"
  "$venv/bin/pip" check -q >/dev/null 2>&1 || { "$venv/bin/pip" check; echo "setup: the pinned referees do not fit together"; exit 1; }
  echo "$want" > "$stamp"
fi
