# shellcheck shell=bash
# An executable's shared libraries copied into a root filesystem, for the images made without
# Docker (scripts/rootfs.sh, scripts/dev-images.sh).

# copy_libs ROOT FILE: every library FILE links (what ldd resolves, the loader too) at its own
# path under ROOT; those already there are kept. A static FILE has none.
copy_libs() {
  local root="$1" file="$2" lib
  # ldd prints "name => /path (addr)" and "/lib64/ld-linux... (addr)": every absolute path.
  for lib in $(ldd "$file" 2>/dev/null | grep -o '/[^ ]*' || true); do
    [[ -e "$root$lib" ]] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
