#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl (the test control plane) and
# kubelet, kube-controller-manager and kube-scheduler (the rest of the one-node
# cluster hack/node.sh runs) from the Go module proxy (see
# hack/controlplane/go.mod) into a cache outside the checkout, keyed by their
# versions, and prints the directory on stdout. They are built in one
# `go build`, so the packages they share compile once. A second run with the
# binaries present only prints the directory, so `make test` and `make demo`
# stay fast.
#
# Progress goes to stderr; only the directory goes to stdout, so callers can do
#   export KUBEBUILDER_ASSETS="$(hack/build-controlplane.sh)"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/controlplane"

version_of() { awk -v m="$1" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$mod/go.mod"; }
k8s="$(version_of k8s.io/kubernetes)"
etcd="$(version_of go.etcd.io/etcd/server/v3)"
# "-v2": since the binaries report their version (ldflags below); the older
# ones said v0.0.0-master, which a chart's kubeVersion refuses.
key="k8s-${k8s}-etcd-${etcd}-$(go env GOOS)-$(go env GOARCH)-v2"

cache_root="${SMAREGI_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/smaregi-operator/controlplane}"
dir="$cache_root/$key"

bins=(etcd kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler)
have=1
for b in "${bins[@]}"; do [[ -x "$dir/$b" ]] || have=0; done
if (( have )); then
  echo "$dir"
  exit 0
fi

mkdir -p "$cache_root"
tmp="$(mktemp -d "$cache_root/.build-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
echo ">> building ${bins[*]} into $dir; the first build takes 15-30 minutes on 2 cores" >&2
# Built from the module, the Kubernetes binaries do not know their version
# (release builds stamp it): stamp it as they do, so that `kubectl version`,
# the API server's /version and helm's kubeVersion checks see the real one.
minor="${k8s#v1.}"
minor="${minor%%.*}"
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$tmp/" \
  ./etcd \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler)
echo ">> built in $(( $(date +%s) - start ))s" >&2

mkdir -p "$dir"
for b in "${bins[@]}"; do mv "$tmp/$b" "$dir/"; done
echo "$dir"
