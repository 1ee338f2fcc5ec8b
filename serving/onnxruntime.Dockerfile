# The model server with the ONNX Runtime backend (cgo) and one model baked in: for models
# gonnx cannot run (any opset but 13, ops it lacks). serving/Dockerfile is the static variant;
# this file keeps its layout and explains only what differs. Build from the repository root:
#
#   docker build -f serving/onnxruntime.Dockerfile \
#     --build-arg MODEL_FILE=models/digits-layernorm-opset17.onnx \
#     --build-arg REVISION=$(git rev-parse HEAD) --build-arg MODEL_VERSION=1 -t model:dev-ort .
#
# ONNX Runtime's shared library comes pinned by sha256, from ORT_LIBRARY_URL (default: the npm
# package onnxruntime-node, which ships it for linux-x64) or, without network, from a file put in
# the build context's onnxruntime/ folder (the one place .dockerignore lets it in):
#   --build-arg ORT_LIBRARY=onnxruntime/libonnxruntime.so.1.24.3 --build-arg ORT_SHA256=92ba8e44...
# Either may be the library itself or a .tgz holding it (npm's, or Microsoft's
# onnxruntime-linux-x64-X.tgz); serving/fetch-onnxruntime.sh checks the sha256 of what it got
# and fails the build, naming both digests, when it differs.
#
# Base images are arguments with public defaults, so a mirror or an air-gapped registry works.
# The runtime needs glibc, libstdc++ and libgcc_s for cgo and libonnxruntime.so: distroless cc,
# from the same Debian release (13, trixie) as golang:1.26, so the binary built against the
# build stage's glibc finds a glibc at least as new where it runs. Change both together.
ARG GO_IMAGE=golang:1.26
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian13:nonroot
# ONNX Runtime 1.24.3 (onnxruntime_go v1.27.0 speaks its C API 24): the npm package's sha256.
ARG ORT_LIBRARY=none
ARG ORT_LIBRARY_URL=https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-1.24.3.tgz
ARG ORT_SHA256=aa1bb5fa261ea68de05dd53efbba210cd7adf2d2850f4c3a201054c74cc78040

# ONNX Runtime in a stage of its own: neither a code nor a go.mod change fetches it again. It
# runs on the builder's platform and takes the target's library (TARGETARCH: amd64 or arm64).
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS onnxruntime
ARG ORT_LIBRARY
ARG ORT_LIBRARY_URL
ARG ORT_SHA256
ARG TARGETARCH
# ORT_LIBRARY is optional: the glob copies it when it names a file and nothing when it is "none"
# (COPY fails only when no source at all matches, in BuildKit and in the legacy builder alike).
COPY serving/fetch-onnxruntime.sh ${ORT_LIBRARY}* /ort/
RUN sh /ort/fetch-onnxruntime.sh /out/libonnxruntime.so

# The build stage runs on the builder's platform, as serving/Dockerfile's does; cgo needs a C
# compiler for the target, which serving/cgo-cross.sh installs (Debian's cross gcc) when the
# target is another architecture: no emulator. Legacy builder: drop --platform=$BUILDPLATFORM
# too, as serving/Dockerfile says.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
WORKDIR /src
ARG GOPROXY=https://proxy.golang.org,direct
# cgo: the ONNX Runtime backend is compiled in only with CGO_ENABLED=1 (gcc is in golang images).
ENV CGO_ENABLED=1 GOFLAGS=-trimpath GOPROXY=${GOPROXY}
ARG TARGETOS
ARG TARGETARCH
COPY serving/cgo-cross.sh /usr/local/bin/
RUN sh /usr/local/bin/cgo-cross.sh install
# Cache mounts as in serving/Dockerfile (legacy builder: drop the --mount options).
COPY go.mod go.sum ./
RUN --mount=type=cache,id=modelship-gomod,target=/go/pkg/mod go mod download
COPY internal/ internal/
COPY serving/ serving/
ARG VERSION=dev
RUN --mount=type=cache,id=modelship-gomod,target=/go/pkg/mod --mount=type=cache,id=modelship-gobuild-cgo,target=/root/.cache/go-build \
    CC=$(sh /usr/local/bin/cgo-cross.sh cc) GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -ldflags "-s -w -X main.version=${VERSION}" -o /out/model-server ./serving/cmd/model-server

FROM ${RUNTIME_IMAGE}
# Layers from the least to the most often changed: ONNX Runtime (a version bump), the model,
# the binary. A code-only change leaves the library and model layers as they were, a model-only
# change the library layer, and a push sends only what changed. All three go to the root: a
# directory the COPY creates would carry the build's time and make a new layer on every build;
# a file keeps its own time (the library's is fixed by fetch-onnxruntime.sh, the model's is the
# context's, 0 in Dagger).
COPY --from=onnxruntime /out/libonnxruntime.so /libonnxruntime.so
ARG MODEL_FILE=models/digits-reference.onnx
COPY ${MODEL_FILE} /model.onnx
COPY --from=build /out/model-server /model-server
ARG REVISION=unknown
ARG VERSION=dev
ARG MODEL_NAME=digits
ARG MODEL_VERSION=
# The model's smoke inference, as in serving/Dockerfile.
ARG SMOKE=
# What the library came from: the sha256 of the .tgz or library fetch-onnxruntime.sh checked.
ARG ORT_SHA256
LABEL org.opencontainers.image.title="modelship model server (ONNX Runtime)" \
      org.opencontainers.image.description="Open Inference Protocol (KServe v2) server for one ONNX model, with ONNX Runtime" \
      org.opencontainers.image.source="https://github.com/modelship/modelship" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      dev.modelship.model.name="${MODEL_NAME}" \
      dev.modelship.model.version="${MODEL_VERSION}" \
      dev.modelship.smoke="${SMOKE}" \
      dev.modelship.onnxruntime.sha256="${ORT_SHA256}"
# MODELSHIP_BACKEND=auto: gonnx when it can run the model, ONNX Runtime otherwise.
ENV MODELSHIP_MODEL_PATH=/model.onnx \
    MODELSHIP_MODEL_NAME=${MODEL_NAME} \
    MODELSHIP_MODEL_VERSION=${MODEL_VERSION} \
    MODELSHIP_ADDR=:8000 \
    MODELSHIP_BACKEND=auto \
    MODELSHIP_ORT_LIBRARY=/libonnxruntime.so
USER 65532:65532
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/model-server", "-probe", "http://127.0.0.1:8000/v2/health/ready"]
ENTRYPOINT ["/model-server"]
