#!/bin/sh
# fetch-onnxruntime.sh OUT — the build step of serving/onnxruntime.Dockerfile that puts ONNX
# Runtime's linux-x64 shared library at OUT. From the environment (the Dockerfile's ARGs):
#   ORT_LIBRARY      a file of the build context, copied next to this script; wins when set
#                    ("none" or empty: not set)
#   ORT_LIBRARY_URL  else, where to download it from (curl or wget)
#   ORT_SHA256       the sha256 of what was copied or downloaded; a mismatch fails the build
# What was copied or downloaded is either the library itself or a .tgz holding it: the npm
# package onnxruntime-node (package/bin/napi-v6/linux/x64/libonnxruntime.so.1) or Microsoft's
# release onnxruntime-linux-x64-X.tgz (onnxruntime-linux-x64-X/lib/libonnxruntime.so.X).
set -eu

die() {
  echo "fetch-onnxruntime: $*" >&2
  exit 1
}

[ $# -eq 1 ] || die "usage: fetch-onnxruntime.sh OUT"
out=$1
[ -n "${ORT_SHA256:-}" ] || die "ORT_SHA256 is empty: the library is only taken with its sha256"
here=$(dirname "$0")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case ${ORT_LIBRARY:-none} in
none)
  [ -n "${ORT_LIBRARY_URL:-}" ] || die "neither ORT_LIBRARY (a file in the build context) nor ORT_LIBRARY_URL is set"
  what=$ORT_LIBRARY_URL
  src=$work/download
  echo "fetch-onnxruntime: downloading $what" >&2
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$src" "$ORT_LIBRARY_URL" || die "download of $what failed"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$src" "$ORT_LIBRARY_URL" || die "download of $what failed"
  else
    die "the build image has neither curl nor wget to download $what; put the file in the build context and set ORT_LIBRARY"
  fi
  ;;
*)
  what="ORT_LIBRARY=$ORT_LIBRARY"
  src=$here/$(basename "$ORT_LIBRARY")
  [ -f "$src" ] || die "$what is not in the build context (a path relative to it, under onnxruntime/, which .dockerignore lets in)"
  ;;
esac

want=$(printf '%s' "$ORT_SHA256" | tr 'A-F' 'a-f')
got=$(sha256sum "$src" | cut -d' ' -f1)
[ "$got" = "$want" ] || die "sha256 mismatch for $what: expected $want (ORT_SHA256), got $got"

# magic FILE: its first four bytes in hex, e.g. 7f454c46 for ELF, 1f8b.... for gzip.
magic() {
  od -An -tx1 -N4 "$1" | tr -d ' \n'
}

lib=$src
case $(magic "$src") in
1f8b*)
  # Only the linux-x64 libonnxruntime.so.* members are extracted, then the one regular file
  # (Microsoft's archive also holds symbolic links to it) is taken.
  tar -tzf "$src" >"$work/members" || die "$what is not a readable .tgz"
  : >"$work/wanted"
  while IFS= read -r member; do
    case $member in
    *linux/x64/libonnxruntime.so* | *linux-x64*/libonnxruntime.so*) printf '%s\n' "$member" >>"$work/wanted" ;;
    esac
  done <"$work/members"
  [ -s "$work/wanted" ] || die "$what holds no linux-x64 libonnxruntime.so.*"
  set --
  while IFS= read -r member; do
    set -- "$@" "$member"
  done <"$work/wanted"
  mkdir "$work/x"
  tar -xzf "$src" -C "$work/x" "$@" || die "extracting libonnxruntime.so.* from $what failed"
  lib=""
  while IFS= read -r member; do
    if [ -f "$work/x/$member" ] && [ ! -L "$work/x/$member" ]; then
      [ -z "$lib" ] || die "$what holds more than one linux-x64 libonnxruntime.so.* file: ${lib#"$work/x/"} and $member"
      lib=$work/x/$member
    fi
  done <"$work/wanted"
  [ -n "$lib" ] || die "$what holds libonnxruntime.so.* only as links"
  ;;
esac
[ "$(magic "$lib")" = 7f454c46 ] || die "${lib#"$work/x/"} from $what is not an ELF shared library"

mkdir -p "$(dirname "$out")"
cp "$lib" "$out"
chmod 0644 "$out"
# A fixed time, so the image layer holding the library is the same bytes on every build.
TZ=UTC0 touch -t 197001010000.00 "$out"
echo "fetch-onnxruntime: $out from $what (sha256 $got)" >&2
