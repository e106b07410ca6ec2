#!/usr/bin/env bash
# Regenerates Sources/QuantONNX/Generated/onnx.pb.swift from the onnx.proto shipped in the
# `onnx` 1.23.2 wheel, with protoc-gen-swift built from apple/swift-protobuf 1.39.0.
# Run once when the ONNX version changes; the generated file is committed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${WORK:-$here/.cache/protogen}
mkdir -p "$work"
command -v protoc >/dev/null || apt-get install -y protobuf-compiler
if [ ! -x "$work/venv/bin/python" ]; then python3 -m venv "$work/venv"; fi
"$work/venv/bin/pip" install -q onnx==1.23.2
proto_dir=$("$work/venv/bin/python" -c 'import onnx, os; print(os.path.dirname(onnx.__file__))')
if [ ! -x "$work/swift-protobuf/.build/release/protoc-gen-swift" ]; then
  rm -rf "$work/swift-protobuf"
  git clone -q --branch 1.39.0 https://github.com/apple/swift-protobuf.git "$work/swift-protobuf"
  (cd "$work/swift-protobuf" && swift build -c release --product protoc-gen-swift)
fi
out=$here/Sources/QuantONNX/Generated
mkdir -p "$out"
cp "$proto_dir/onnx.proto" "$work/onnx.proto"
protoc --plugin=protoc-gen-swift="$work/swift-protobuf/.build/release/protoc-gen-swift" \
  --swift_opt=Visibility=Public --swift_out="$out" -I "$work" "$work/onnx.proto"
echo "generated $out/onnx.pb.swift from onnx $("$work/venv/bin/python" -c 'import onnx; print(onnx.__version__)')"
