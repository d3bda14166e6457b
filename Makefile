# smaregi-operator Makefile (kubebuilder v4 conventions).
#
#   make demo   local control plane + simulator + operator, one command
#   make test   everything CI runs (unit, envtest, both inventory backends)

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

IMG ?= ghcr.io/stocksync/smaregi-operator:dev
CONTROLLER_GEN ?= go tool controller-gen
KUSTOMIZE ?= $(KUBECTL) kustomize

# The test control plane (kube-apiserver, etcd, kubectl) is built from Go
# modules by hack/build-controlplane.sh and cached outside the checkout.
ENVTEST_ASSETS_CMD = hack/build-controlplane.sh

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

.PHONY: generate
generate: ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: envtest
envtest: ## Build (once, cached) kube-apiserver, etcd and kubectl; print their directory.
	@$(ENVTEST_ASSETS_CMD)
