# shellcheck shell=bash
# Debian packages unpacked into a private folder: their files without installing anything on
# the host (no package script runs, no daemon starts). Used for what runs inside the test
# cluster's node or its images (scripts/kube.sh, scripts/dev-images.sh).
#
# Source it from a script that defines `die MSG...`:  source "$SCRIPT_DIR/lib/debian.sh"

# debian_extract DIR PKG...: download each package's .deb into DIR (once; `apt-get update` only
# when the index lacks it) and unpack it to DIR/x-PKG, replacing an earlier unpacking.
debian_extract() {
  local dir="$1" pkg deb
  shift
  mkdir -p "$dir"
  for pkg in "$@"; do
    deb="$(cd "$dir" && compgen -G "${pkg}_*.deb" | head -n 1)" || true
    if [[ -z "$deb" ]]; then
      (cd "$dir" && { apt-get download "$pkg" >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get download "$pkg" >/dev/null; }; }) \
        || die "apt-get download $pkg failed"
      deb="$(cd "$dir" && compgen -G "${pkg}_*.deb" | head -n 1)"
    fi
    rm -rf "${dir:?}/x-$pkg"
    dpkg -x "$dir/$deb" "$dir/x-$pkg"
  done
}
