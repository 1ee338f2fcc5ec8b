#!/bin/sh
# cgo-cross.sh install|cc — the C compiler serving/onnxruntime.Dockerfile's cgo build uses for
# TARGETARCH (the Dockerfile's ARG: BuildKit sets it per platform; empty means this machine's).
# The build stage runs on the builder's own platform, so a target of another architecture gets
# Debian's cross gcc instead of an emulator:
#   install  apt-get installs the cross compiler when the target is another architecture
#   cc       prints the compiler to build with (gcc, or e.g. aarch64-linux-gnu-gcc)
set -eu

die() {
  echo "cgo-cross: $*" >&2
  exit 1
}

native=$(go env GOHOSTARCH)
target=${TARGETARCH:-$native}
case $target in
amd64) triple=x86_64-linux-gnu debarch=amd64 ;;
arm64) triple=aarch64-linux-gnu debarch=arm64 ;;
*) die "linux/$target: the ONNX Runtime image is built for linux/amd64 and linux/arm64 (ONNX Runtime's Linux builds)" ;;
esac

case ${1:-} in
install)
  [ "$target" = "$native" ] && exit 0
  echo "cgo-cross: installing gcc for $triple (building on $native for $target)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "gcc-$triple" "libc6-dev-$debarch-cross" >/dev/null
  rm -rf /var/lib/apt/lists/*
  ;;
cc)
  if [ "$target" = "$native" ]; then echo gcc; else echo "$triple-gcc"; fi
  ;;
*) die "usage: cgo-cross.sh install|cc" ;;
esac
