# Build the operator binary.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH

WORKDIR /workspace
# Cache module downloads before copying the sources.
COPY go.mod go.sum ./
RUN go mod download

# The whole module, less what .dockerignore keeps out (tests, docs, charts,
# hack, .git): a new package is built without a change here.
COPY . .

# Static (the runtime image has no libc), reproducible (-trimpath, no build
# ID), with the time-zone database inside: Smaregi's timestamps are JST.
# `make image` builds the same binary the same way without a Docker engine.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -tags timetzdata -ldflags='-s -w -buildid=' -o manager ./cmd

# distroless/static: CA certificates, nonroot user 65532, no shell, no
# package manager.
FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/manager .
USER 65532:65532

ENTRYPOINT ["/manager"]
