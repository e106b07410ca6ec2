#!/usr/bin/env bash
# Streams 1,000 and 10,000 Fashion-MNIST test PNGs through `quantkit data-preview --dry-run`
# (decode + preprocess + batch, nothing written) and prints wall time and peak RSS for both.
# Flat streaming means both peaks are about the same. Needs: swift build -c release,
# scripts/setup.sh (dataset-fashion-mnist, time, Pillow) and scripts/make-fashion-mnist-pngs.py.
# Usage: Benchmarks/data_streaming.sh [BATCH]   (default batch 32)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/.build/release/quantkit
data=$here/.cache/data/fashion-mnist/test
batch=${1:-32}
[ -x "$bin" ] || { echo "build first: swift build -c release"; exit 1; }
[ -f "$data/labels.txt" ] || "$here/.venv/bin/python" "$here/scripts/make-fashion-mnist-pngs.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in 1000 10000; do
  head -n "$n" "$data/labels.txt" | cut -d' ' -f1 | sed "s|^|$data/|" > "$tmp/list$n.txt"
  /usr/bin/time -v "$bin" data-preview --input "x=$tmp/list$n.txt" --shape x=-1,1,28,28 --color gray \
    --scale 0.00392156862745098 --batch "$batch" --dry-run > "$tmp/out$n.txt" 2> "$tmp/time$n.txt"
  rss=$(grep "Maximum resident set size" "$tmp/time$n.txt" | awk '{print $NF}')
  wall=$(grep "Elapsed (wall clock)" "$tmp/time$n.txt" | awk '{print $NF}')
  printf "%6d images, batch %d: %s, wall %s, peak RSS %s KiB\n" "$n" "$batch" "$(tail -n 1 "$tmp/out$n.txt")" "$wall" "$rss"
done
