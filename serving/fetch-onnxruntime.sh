#!/bin/sh
# fetch-onnxruntime.sh OUT — the build step of serving/onnxruntime.Dockerfile that puts ONNX
# Runtime's shared library for TARGETARCH (amd64 or arm64; empty: this machine's) at OUT, and
# checks it is an ELF library for that architecture. From the environment (the Dockerfile's ARGs):
#   ORT_LIBRARY      a file of the build context, copied next to this script; wins when set
#                    ("none" or empty: not set)
#   ORT_LIBRARY_URL  else, where to download it from (curl or wget)
#   ORT_SHA256       the sha256 of what was copied or downloaded; a mismatch fails the build
# What was copied or downloaded is either the library itself or a .tgz holding it: the npm
# package onnxruntime-node (package/bin/napi-v6/linux/{x64,arm64}/libonnxruntime.so.1, both
# architectures) or Microsoft's release onnxruntime-linux-{x64,aarch64}-X.tgz
# (onnxruntime-linux-x64-X/lib/libonnxruntime.so.X).
set -eu

die() {
  echo "fetch-onnxruntime: $*" >&2
  exit 1
}

[ $# -eq 1 ] || die "usage: fetch-onnxruntime.sh OUT"
arch=${TARGETARCH:-}
if [ -z "$arch" ]; then
  case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
  esac
fi
# npm's folder, Microsoft's archive name, and the ELF e_machine bytes of each architecture.
case $arch in
amd64) npm=x64 ms=x64 machine=3e00 ;;
arm64) npm=arm64 ms=aarch64 machine=b700 ;;
*) die "linux/$arch: ONNX Runtime ships Linux libraries for amd64 and arm64 only" ;;
esac
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
  # Only the target's libonnxruntime.so.* members are extracted, then the one regular file
  # (Microsoft's archive also holds symbolic links to it) is taken.
  tar -tzf "$src" >"$work/members" || die "$what is not a readable .tgz"
  : >"$work/wanted"
  while IFS= read -r member; do
    case $member in
    *linux/"$npm"/libonnxruntime.so* | *linux-"$ms"*/libonnxruntime.so*) printf '%s\n' "$member" >>"$work/wanted" ;;
    esac
  done <"$work/members"
  [ -s "$work/wanted" ] || die "$what holds no libonnxruntime.so.* for linux/$arch"
  set --
  while IFS= read -r member; do
    set -- "$@" "$member"
  done <"$work/wanted"
  mkdir "$work/x"
  tar -xzf "$src" -C "$work/x" "$@" || die "extracting libonnxruntime.so.* from $what failed"
  lib=""
  while IFS= read -r member; do
    if [ -f "$work/x/$member" ] && [ ! -L "$work/x/$member" ]; then
      [ -z "$lib" ] || die "$what holds more than one libonnxruntime.so.* file for linux/$arch: ${lib#"$work/x/"} and $member"
      lib=$work/x/$member
    fi
  done <"$work/wanted"
  [ -n "$lib" ] || die "$what holds libonnxruntime.so.* only as links"
  ;;
esac
[ "$(magic "$lib")" = 7f454c46 ] || die "${lib#"$work/x/"} from $what is not an ELF shared library"
# e_machine, bytes 18-19: a library for another architecture would only fail when the server
# starts; a single .so serves one platform, a .tgz with both (the npm package) serves both.
[ "$(od -An -tx1 -j18 -N2 "$lib" | tr -d ' \n')" = "$machine" ] ||
  die "${lib#"$work/x/"} from $what is not a linux/$arch library; give the library of that architecture, or a .tgz holding both (the npm package onnxruntime-node)"

mkdir -p "$(dirname "$out")"
cp "$lib" "$out"
chmod 0644 "$out"
# A fixed time, so the image layer holding the library is the same bytes on every build.
TZ=UTC0 touch -t 197001010000.00 "$out"
echo "fetch-onnxruntime: $out from $what (sha256 $got)" >&2
