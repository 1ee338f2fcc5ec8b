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

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  install_go_tools
fi
