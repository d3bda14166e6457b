# smaregi-operator Makefile (kubebuilder v4 conventions).
#
#   make demo   local control plane + simulator + operator, one command
#   make test   everything CI runs (unit, envtest, both inventory backends, the
#               chart on a one-node cluster as root)

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

IMG ?= ghcr.io/stocksync/smaregi-operator:dev
CONTROLLER_GEN ?= go tool controller-gen
KUSTOMIZE ?= $(KUBECTL) kustomize

# The test control plane (kube-apiserver, etcd, kubectl) is built from Go
# modules by hack/build-controlplane.sh and cached outside the checkout.
ENVTEST_ASSETS_CMD = hack/build-controlplane.sh
# helm, for the chart tests and the e2e tests (whose operators run with the
# chart's RBAC), is built the same way by hack/build-helm.sh.
HELM_CMD = hack/build-helm.sh

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRD, RBAC and webhook manifests from the markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases
	@# The Helm chart installs the same CRD (test/chart fails on drift).
	cp config/crd/bases/*.yaml charts/smaregi-operator/files/crds/

.PHONY: generate
generate: ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: helm
helm: ## Build (once, cached) the helm CLI for the chart tests; print its path.
	@$(HELM_CMD)

.PHONY: envtest
envtest: ## Build (once, cached) kube-apiserver, etcd and kubectl; print their directory.
	@$(ENVTEST_ASSETS_CMD)

# go test's own timeout for the whole run; CI has 90 minutes in all.
TEST_TIMEOUT ?= 30m
# The race detector is on by default: the receiver, sync engine, pusher and
# inventory store are concurrent by design. `make test TEST_FLAGS=` skips it.
TEST_FLAGS ?= -race

.PHONY: test
# test/node (as root) installs the chart on a one-node cluster (hack/node.sh)
# with the image `make image` wrote; SMAREGI_NODE_TEST=0 leaves it out.
test: manifests generate fmt vet image ## Run every test: unit, envtest (real kube-apiserver), both inventory backends, the chart on a real node.
	@export KUBEBUILDER_ASSETS="$$($(ENVTEST_ASSETS_CMD))"; \
	 export SMAREGI_TEST_POSTGRES_URL="$${SMAREGI_TEST_POSTGRES_URL:-$$(hack/postgres.sh start)}"; \
	 export HELM="$$($(HELM_CMD))"; \
	 export SMAREGI_OPERATOR_IMAGE_ARCHIVE="$(abspath $(IMAGE_ARCHIVE))"; \
	 echo ">> KUBEBUILDER_ASSETS=$$KUBEBUILDER_ASSETS HELM=$$HELM SMAREGI_OPERATOR_IMAGE_ARCHIVE=$$SMAREGI_OPERATOR_IMAGE_ARCHIVE"; \
	 go test -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./...; \
	 echo ">> the Helm chart (test/chart, its own module)"; \
	 (cd test/chart && go test -count=1 -timeout $(TEST_TIMEOUT) ./...); \
	 echo ">> the image builder (hack/imagebuild, its own module)"; \
	 (cd hack/imagebuild && go test -count=1 -timeout $(TEST_TIMEOUT) ./...)

# Where `make bench` keeps the raw `go test -bench` output it summarises.
BENCH_OUT ?= /tmp/smaregi-bench.out

.PHONY: bench
bench: ## Run the benchmarks; print their figures, then one table of every target with pass/miss (docs/benchmarks.md).
	@export KUBEBUILDER_ASSETS="$$($(ENVTEST_ASSETS_CMD))"; \
	 export SMAREGI_TEST_POSTGRES_URL="$${SMAREGI_TEST_POSTGRES_URL:-$$(hack/postgres.sh start)}"; \
	 export HELM="$$($(HELM_CMD))"; \
	 sampled='^Benchmark(RecordSend|SendToMirrorLag|AdjustmentToApplied|HandlerStockSend|HTTPStockSend)$$'; \
	 repeated='^BenchmarkFullReconcile100k$$'; \
	 { echo ">> every benchmark once (-benchtime 1x), except those run below"; \
	 go test -run '^$$' -bench . -skip "$$sampled|$$repeated" -benchmem -benchtime 1x -timeout 30m ./...; \
	 echo ">> one op = one send, sale or adjustment: 2000 of each, for rates and percentiles"; \
	 go test -run '^$$' -bench "$$sampled" -benchmem -benchtime 2000x -timeout 30m ./...; \
	 echo ">> first op = initial import, then 2 reconciles of 100 drifted rows"; \
	 go test -run '^$$' -bench "$$repeated" -benchmem -benchtime 3x -timeout 30m ./internal/mirror/; \
	 echo ">> end to end: the operator binary, the simulator and a channel over HTTP (make bench-e2e)"; \
	 go test -tags bench -run '^$$' -bench '^Benchmark(EndToEnd(Platform)?|ReceiverKeylessFlood)$$' -benchtime 1x -timeout 20m ./test/e2e/; \
	 } 2>&1 | tee $(BENCH_OUT); \
	 go run ./hack/benchsummary $(BENCH_OUT)

BENCH_SCALE_OUT ?= /tmp/smaregi-bench-scale.out

.PHONY: bench-scale
bench-scale: ## Many SmaregiStores in one operator, on bolt and PostgreSQL (SMAREGI_SCALE_STORES, default 1000; docs/benchmarks.md).
	@export KUBEBUILDER_ASSETS="$$($(ENVTEST_ASSETS_CMD))"; \
	 export SMAREGI_TEST_POSTGRES_URL="$${SMAREGI_TEST_POSTGRES_URL:-$$(hack/postgres.sh start)}"; \
	 export HELM="$$($(HELM_CMD))"; \
	 go test -tags bench -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -timeout 240m ./test/e2e/ 2>&1 | tee $(BENCH_SCALE_OUT); \
	 go run ./hack/benchsummary $(BENCH_SCALE_OUT)

.PHONY: bench-e2e
bench-e2e: ## End-to-end figures: the operator binary, the simulator and a channel over HTTP (docs/benchmarks.md).
	@export KUBEBUILDER_ASSETS="$$($(ENVTEST_ASSETS_CMD))"; \
	 export HELM="$$($(HELM_CMD))"; \
	 go test -tags bench -run '^$$' -bench '^BenchmarkEndToEnd(Platform)?$$' -benchtime 1x -timeout 20m ./test/e2e/

.PHONY: postgres
postgres: ## Install (from Debian's packages) and start a throwaway local PostgreSQL; print its URL.
	@hack/postgres.sh start

.PHONY: postgres-stop
postgres-stop: ## Stop the local PostgreSQL started by `make postgres`.
	@hack/postgres.sh stop

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the operator, the simulator and the kubectl plugin into bin/.
	go build -o bin/manager ./cmd
	go build -o bin/smaregi-sim ./cmd/smaregi-sim
	go build -o bin/kubectl-smaregi ./cmd/kubectl-smaregi

.PHONY: run
run: manifests generate fmt vet ## Run the operator from your host against the cluster in KUBECONFIG.
	go run ./cmd --receiver-bind-address 127.0.0.1:8082 --receiver-base-url http://127.0.0.1:8082 \
	  --inventory bolt://$(CURDIR)/bin/inventory.db

.PHONY: demo
demo: ## Quick start: local control plane + simulator + operator + sample store. Ctrl-C stops it all.
	@go run ./cmd/smaregi-demo

CONTAINER_TOOL ?= docker

.PHONY: docker-build
docker-build: ## Build the operator image with a Docker engine (or CONTAINER_TOOL=podman) from the Dockerfile.
	$(CONTAINER_TOOL) build -t $(IMG) .

# `make image` builds the same image as the Dockerfile without a Docker engine,
# base image or registry (docs/release.md): the static binary, built as the
# Dockerfile builds it, is put into a one-layer image by hack/imagebuild (its
# own Go module). Same tree, same digest.
IMAGE_ARCH ?= $(shell go env GOARCH)
IMAGE_ARCHIVE ?= dist/smaregi-operator-image.tar
IMAGE_BINARY = dist/manager-linux-$(IMAGE_ARCH)

.PHONY: image
image: ## Build the operator image (no Docker needed) into dist/smaregi-operator-image.tar; print its digest.
	@mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) go build -trimpath -tags timetzdata -ldflags='-s -w -buildid=' -o $(IMAGE_BINARY) ./cmd
	@go run -C hack/imagebuild . --binary "$(CURDIR)/$(IMAGE_BINARY)" --arch $(IMAGE_ARCH) --tag $(IMG) \
	  --label org.opencontainers.image.source=https://github.com/stocksync/smaregi-operator \
	  --out "$(abspath $(IMAGE_ARCHIVE))" > dist/image.digest
	@echo "$(IMG) $$(cat dist/image.digest) $(IMAGE_ARCHIVE)"

.PHONY: docker-push
docker-push: ## Push the operator image.
	$(CONTAINER_TOOL) push $(IMG)

##@ Deployment

# kubectl from PATH, else the one built with the test control plane.
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo "$$($(ENVTEST_ASSETS_CMD))/kubectl")

.PHONY: install
install: manifests ## Install the CRD into the cluster in KUBECONFIG.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRD (and every SmaregiStore) from the cluster.
	$(KUBECTL) delete --ignore-not-found -k config/crd

# The kustomize installation (config/default) with the manager's image set
# to IMG: what `make deploy` applies and `make build-installer` writes.
INSTALL_MANIFEST = $(KUBECTL) kustomize config/default | sed 's\#ghcr.io/stocksync/smaregi-operator:dev\#$(IMG)\#'

.PHONY: deploy
deploy: manifests ## Deploy the operator (image IMG) into the cluster in KUBECONFIG.
	$(INSTALL_MANIFEST) | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove the operator from the cluster.
	$(KUBECTL) kustomize config/default | $(KUBECTL) delete --ignore-not-found -f -

##@ Release

# The image tag, for the chart's appVersion.
IMG_TAG = $(lastword $(subst :, ,$(IMG)))

.PHONY: build-installer
build-installer: manifests generate ## Write dist/install.yaml: the CRDs, RBAC and the manager with image IMG, for `kubectl apply -f`.
	@mkdir -p dist
	$(INSTALL_MANIFEST) > dist/install.yaml

.PHONY: helm-package
helm-package: manifests ## Package the chart into dist/ with appVersion set to IMG's tag.
	@mkdir -p dist
	"$$($(HELM_CMD))" package charts/smaregi-operator -d dist --app-version "$(IMG_TAG)"

.PHONY: release
release: image build-installer helm-package ## Every release artefact in dist/: image archive (and digest), install.yaml, chart package.
	@ls -l dist
