#!/usr/bin/env bash
# The one test command (README "Testing"). On a fresh Debian machine it installs what the tests
# need, builds the pinned tools once per machine into $MODELSHIP_CACHE, starts a Docker engine
# when none answers, and runs every test with JUnit output in test-results/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/tools.sh

RESULTS_DIR="${RESULTS_DIR:-test-results}"
FUZZTIME="${FUZZTIME:-15s}"
required=()

log() { printf '\n==> %s\n' "$*" >&2; }

# Debian packages: a Docker engine, a static busybox for the locally made Go base image,
# debootstrap for the glibc base images of the ONNX Runtime image, `file` to check busybox is
# static, shellcheck for the scripts, and sshd for the tests that reach an engine over ssh://
# (they start their own; the packages may start no service meanwhile).
install_debian_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  # debootstrap lives in /usr/sbin, which a non-root PATH may lack.
  [[ -x /usr/sbin/debootstrap ]] || command -v debootstrap >/dev/null || missing+=(debootstrap)
  # A C compiler: the ONNX Runtime backend is cgo, in the server and in the tests.
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)
  command -v file >/dev/null || missing+=(file)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v npm >/dev/null || missing+=(npm)
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
  [[ -x /bin/busybox ]] && file -L /bin/busybox | grep -q 'statically linked' || missing+=(busybox-static)
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) != 0 ]]; then
    echo "test: not root, cannot install ${missing[*]}; tests that need them will skip and say so" >&2
    return 0
  fi
  log "installing ${missing[*]}"
  local guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod +x "$guard"
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [[ -z $guard ]] || rm -f "$guard"
}

docker_answers() {
  timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# make_bridge gives this run's dockerd a bridge of its own on a subnet no route on the host
# holds. docker0 is not safe to reuse: a dockerd killed without a chance to clean up (a machine
# snapshot, a kill -9) leaves network namespaces behind that still answer for 172.17.0.x on it,
# so a new container given the same address is unreachable and every check hangs.
BRIDGE=""
BRIDGE_NET=""
make_bridge() {
  local n routes
  routes=$(ip -4 route show)
  for n in $(seq 0 254); do
    grep -q "^10\.213\.$n\.0/24 " <<<"$routes" && continue
    BRIDGE="msdocker$n"
    BRIDGE_NET="10.213.$n.0/24"
    ip link delete "$BRIDGE" 2>/dev/null || true
    ip link add "$BRIDGE" type bridge
    ip addr add "10.213.$n.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    return 0
  done
  echo "test: no free 10.213.x.0/24 subnet for the Docker bridge" >&2
  exit 1
}

# ensure_docker uses the engine DOCKER_HOST (or the default socket) names, or starts dockerd with
# its data in the cache, so base images and build layers survive from one run to the next.
DOCKERD_PID=""
SOMEONES_ENGINE=""
IMAGES_BEFORE=""
ensure_docker() {
  if docker_answers; then
    required+=(docker)
    # Someone's own engine: what this run builds (test images, build stages) goes again at exit.
    echo "test: using the Docker engine at ${DOCKER_HOST:-the default socket}; the images this run builds are removed at exit (MODELSHIP_TEST_KEEP_IMAGES=1 keeps them)" >&2
    SOMEONES_ENGINE=1
    IMAGES_BEFORE=$(docker image ls -aq --no-trunc | sort -u)
    return 0
  fi
  if ! command -v dockerd >/dev/null || [[ $(id -u) != 0 ]]; then
    echo "test: no Docker engine and none can be started here; Docker tests will skip" >&2
    return 0
  fi
  local run_dir data_dir
  run_dir=$(mktemp -d /tmp/modelship-dockerd.XXXXXX)
  data_dir="$MODELSHIP_CACHE/dockerd/$(dockerd --version | awk '{print $3}' | tr -d ,)"
  mkdir -p "$data_dir"
  make_bridge
  log "starting dockerd (data in $data_dir, containers on $BRIDGE $BRIDGE_NET)"
  dockerd --host "unix://$run_dir/docker.sock" --data-root "$data_dir" --exec-root "$run_dir/exec" \
    --pidfile "$run_dir/docker.pid" --bridge "$BRIDGE" >"$run_dir/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  export DOCKER_HOST="unix://$run_dir/docker.sock"
  for _ in $(seq 1 120); do
    docker_answers && break
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
      cat "$run_dir/dockerd.log" >&2
      echo "test: dockerd exited at start" >&2
      exit 1
    fi
    sleep 0.5
  done
  docker_answers || { tail -20 "$run_dir/dockerd.log" >&2; echo "test: dockerd did not answer within 60s" >&2; exit 1; }
  required+=(docker)
  # Old build stages of earlier runs are dangling images; keep a day's worth for the cache.
  docker image prune --force --filter until=24h >/dev/null || true
}

# remove_built_images removes, from an engine this run did not start, the images that were not
# there before it (containers the tests left were removed by the tests themselves).
remove_built_images() {
  [[ -n $SOMEONES_ENGINE && -z ${MODELSHIP_TEST_KEEP_IMAGES:-} ]] || return 0
  comm -13 <(printf '%s\n' "$IMAGES_BEFORE") <(docker image ls -aq --no-trunc | sort -u) |
    xargs -r docker image rm -f >/dev/null 2>&1 || true
}

stop_docker() {
  remove_built_images
  if [[ -n "$DOCKERD_PID" ]]; then
    kill "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
  fi
  if [[ -n "$BRIDGE" ]]; then
    ip link delete "$BRIDGE" 2>/dev/null || true
  fi
}
trap stop_docker EXIT

start=$SECONDS
install_debian_packages
log "building pinned tools into $TOOLS_DIR"
install_go_tools
install_gitlab_ci_local
install_onnxruntime
install_kube_tools
required+=(minio registry gotestsum kubernetes cosign)
ensure_docker
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' && required+=(busybox-static)
[[ -x /usr/sbin/sshd && $(id -u) == 0 ]] && required+=(sshd)
[[ -x /usr/sbin/debootstrap && $(id -u) == 0 ]] && required+=(debootstrap)
[[ -f ${MODELSHIP_ORT_LIBRARY:-} ]] && required+=(onnxruntime)
export MODELSHIP_TEST_REQUIRE
MODELSHIP_TEST_REQUIRE=$(IFS=,; echo "${required[*]}")
log "set up in $((SECONDS - start))s; required parts: ${MODELSHIP_TEST_REQUIRE:-none}"

log "gofmt and go vet"
mapfile -t go_files < <(git ls-files '*.go' 2>/dev/null || find . -name '*.go')
unformatted=$(gofmt -l "${go_files[@]}")
if [[ -n "$unformatted" ]]; then
  echo "gofmt wants changes in:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...

log "golangci-lint (.golangci.yml) on the root module and ci/"
golangci-lint run ./...
(cd ci && golangci-lint run ./...)

log "shellcheck on the scripts (the e2e script runs only where an engine is)"
shellcheck -x scripts/*.sh .ci/run

log "the Dagger module and the CI files"
bash scripts/check-ci.sh

log "known vulnerabilities (govulncheck)"
bash scripts/vulncheck.sh

log "tests (JUnit: $RESULTS_DIR/junit.xml)"
mkdir -p "$RESULTS_DIR"
# -timeout: on a cold machine a package that builds images waits for the others' builds (one at a
# time, testenv.buildTurn) and can pass go test's default 10 minutes without being stuck.
gotestsum --junitfile "$RESULTS_DIR/junit.xml" --format testname -- -race -count=1 -timeout 40m ./...
log "the Dagger module's own tests (JUnit: $RESULTS_DIR/junit-ci.xml)"
results=$(cd "$RESULTS_DIR" && pwd)
(cd ci && gotestsum --junitfile "$results/junit-ci.xml" --format testname -- -count=1 ./...)

log "the example projects through the CLI gate (reports in $RESULTS_DIR/examples/)"
for project in examples/*/; do
  models=("$project"model/*.onnx)
  MODELSHIP_PROJECT=$project MODELSHIP_MODEL_FILE=${models[0]} MODELSHIP_REPORT_DIR="$results/examples/$(basename "$project")" \
    bash scripts/gate.sh
done
log "the diabetes example's own server, a Go module of its own (JUnit: $RESULTS_DIR/junit-example-server.xml)"
(cd examples/diabetes-regression/server && go vet ./... &&
  gotestsum --junitfile "$results/junit-example-server.xml" --format testname -- -race -count=1 ./...)

log "fuzzing the inference request decoder for $FUZZTIME"
go test -run '^$' -fuzz '^FuzzDecodeInferRequest$' -fuzztime "$FUZZTIME" ./serving

log "all tests passed in $((SECONDS - start))s"
