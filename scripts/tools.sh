#!/usr/bin/env bash
# Builds each pinned tool and test server once per machine into a folder named for its
# version, and reuses it after. Sourced by scripts/test.sh; safe to run alone.
set -euo pipefail

MODELSHIP_CACHE="${MODELSHIP_CACHE:-$HOME/.cache/modelship}"
TOOLS_DIR="$MODELSHIP_CACHE/tools"

# name|module path with version|binary
PINNED_TOOLS=(
  "gotestsum|gotest.tools/gotestsum@v1.13.0|gotestsum"
  "minio|github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c|minio"
  "registry|github.com/distribution/distribution/v3/cmd/registry@v3.1.2|registry"
  "actionlint|github.com/rhysd/actionlint/cmd/actionlint@v1.7.12|actionlint"
  "golangci-lint|github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0|golangci-lint"
  "govulncheck|golang.org/x/vuln/cmd/govulncheck@v1.9.0|govulncheck"
  "cosign|github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5|cosign"
)

# tool_dir prints the versioned folder a pinned tool lives in.
tool_dir() {
  local spec=$1
  local mod=${spec%@*} ver=${spec##*@}
  echo "$TOOLS_DIR/$(basename "$mod")@$ver"
}

# install_tool builds one pinned tool unless its versioned folder already holds it.
install_tool() {
  local name=$1 spec=$2 bin=$3 dir
  dir=$(tool_dir "$spec")
  if [[ -x "$dir/$bin" ]]; then
    return 0
  fi
  echo "tools: building $name ($spec) into $dir" >&2
  local start=$SECONDS
  mkdir -p "$dir.tmp"
  GOBIN="$dir.tmp" CGO_ENABLED=0 go install "$spec"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  echo "tools: $name built in $((SECONDS - start))s" >&2
}

install_go_tools() {
  local entry name spec bin
  for entry in "${PINNED_TOOLS[@]}"; do
    IFS='|' read -r name spec bin <<<"$entry"
    install_tool "$name" "$spec" "$bin"
    PATH="$(tool_dir "$spec"):$PATH"
  done
  export PATH
}

GITLAB_CI_LOCAL_VERSION=4.73.0

# install_gitlab_ci_local puts gitlab-ci-local (npm) in its versioned folder and on PATH.
install_gitlab_ci_local() {
  local dir="$TOOLS_DIR/gitlab-ci-local@$GITLAB_CI_LOCAL_VERSION"
  if [[ ! -x "$dir/node_modules/.bin/gitlab-ci-local" ]]; then
    echo "tools: installing gitlab-ci-local $GITLAB_CI_LOCAL_VERSION (npm) into $dir" >&2
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    npm install --prefix "$dir.tmp" --silent --no-audit --no-fund "gitlab-ci-local@$GITLAB_CI_LOCAL_VERSION" >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  PATH="$dir/node_modules/.bin:$PATH"
  export PATH
}

ETCD_VERSION=v3.6.16
KUBE_VERSION=v1.37.2
KWOK_VERSION=v0.8.0

# build_in_scratch_module builds main packages of modules that need a go.mod of their own
# (replace directives, tool dependencies) into a versioned folder.
build_in_scratch_module() {
  local dir=$1 gomod=$2
  shift 2
  local scratch
  scratch=$(mktemp -d)
  printf '%s\n' "$gomod" >"$scratch/go.mod"
  # Best effort: the build below downloads what is still missing and reports it.
  (cd "$scratch" && { GOFLAGS=-mod=mod go mod download >/dev/null 2>&1 || true; })
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  (cd "$scratch" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$dir.tmp/" "$@")
  rm -rf "$scratch"
}

# install_kube_tools builds a Kubernetes control plane for the Kubernetes target's tests: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (fake nodes and pods).
install_kube_tools() {
  local start dir
  dir="$TOOLS_DIR/etcd@$ETCD_VERSION"
  if [[ ! -x "$dir/etcd" ]]; then
    start=$SECONDS
    echo "tools: building etcd $ETCD_VERSION into $dir" >&2
    build_in_scratch_module "$dir" "module build/etcd
go 1.26
require go.etcd.io/etcd/server/v3 $ETCD_VERSION" go.etcd.io/etcd/server/v3
    mv "$dir.tmp/server" "$dir.tmp/etcd"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    echo "tools: etcd built in $((SECONDS - start))s" >&2
  fi
  PATH="$dir:$PATH"

  dir="$TOOLS_DIR/kubernetes@$KUBE_VERSION"
  if [[ ! -x "$dir/kube-apiserver" || ! -x "$dir/kube-controller-manager" || ! -x "$dir/kube-scheduler" ]]; then
    start=$SECONDS
    echo "tools: building kube-apiserver, kube-controller-manager, kube-scheduler $KUBE_VERSION into $dir" >&2
    local staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
      cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
      cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt
      kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
      mount-utils pod-security-admission sample-apiserver streaming"
    local gomod="module build/kubernetes
go 1.26
require k8s.io/kubernetes $KUBE_VERSION" repo
    for repo in $staging; do
      gomod+=$'\n'"replace k8s.io/$repo => k8s.io/$repo v0${KUBE_VERSION#v1}"
    done
    build_in_scratch_module "$dir" "$gomod" k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    echo "tools: Kubernetes control plane built in $((SECONDS - start))s" >&2
  fi
  PATH="$dir:$PATH"

  dir="$TOOLS_DIR/kwok@$KWOK_VERSION"
  if [[ ! -x "$dir/kwok" || ! -d "$dir/stage" ]]; then
    start=$SECONDS
    echo "tools: building kwok $KWOK_VERSION into $dir" >&2
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    GOBIN="$dir.tmp" CGO_ENABLED=0 go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    cp -r "$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage" "$dir.tmp/stage"
    chmod -R u+w "$dir.tmp/stage"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    echo "tools: kwok built in $((SECONDS - start))s" >&2
  fi
  PATH="$dir:$PATH"
  export PATH
}

# ONNX Runtime's shared library for the server's cgo backend, from the npm package
# onnxruntime-node (it ships libonnxruntime for linux-x64). Pinned by version and checked by
# the sha256 of the package and of the library; onnxruntime_go v1.27.0 speaks its C API 24.
ORT_VERSION=1.24.3
ORT_NPM_SHA256=aa1bb5fa261ea68de05dd53efbba210cd7adf2d2850f4c3a201054c74cc78040
ORT_LIB_SHA256=92ba8e44d31b80a34f5e805076a044122c3be1fffe0d88ed790de7267b0b2682

# install_onnxruntime puts libonnxruntime.so.$ORT_VERSION in its versioned folder and exports
# MODELSHIP_ORT_LIBRARY, which the server and the tests load it from.
install_onnxruntime() {
  local dir="$TOOLS_DIR/onnxruntime@$ORT_VERSION" lib="libonnxruntime.so.$ORT_VERSION"
  if [[ ! -f "$dir/$lib" ]]; then
    echo "tools: fetching ONNX Runtime $ORT_VERSION (npm onnxruntime-node) into $dir" >&2
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    (cd "$dir.tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
    local tgz="$dir.tmp/onnxruntime-node-$ORT_VERSION.tgz"
    echo "$ORT_NPM_SHA256  $tgz" | sha256sum --check --quiet ||
      { echo "tools: onnxruntime-node-$ORT_VERSION.tgz does not match its pinned sha256" >&2; return 1; }
    tar -xzf "$tgz" -C "$dir.tmp" --strip-components=5 package/bin/napi-v6/linux/x64/libonnxruntime.so.1
    mv "$dir.tmp/libonnxruntime.so.1" "$dir.tmp/$lib" && rm -f "$tgz"
    echo "$ORT_LIB_SHA256  $dir.tmp/$lib" | sha256sum --check --quiet ||
      { echo "tools: $lib does not match its pinned sha256" >&2; return 1; }
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  export MODELSHIP_ORT_LIBRARY="$dir/$lib"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  install_go_tools
fi
