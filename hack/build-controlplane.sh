#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from the Go module proxy (see
# hack/controlplane/go.mod) into a cache outside the checkout, keyed by their
# versions, and prints the directory on stdout. A second run with the binaries
# present only prints the directory, so `make test` and `make demo` stay fast.
#
# Progress goes to stderr; only the directory goes to stdout, so callers can do
#   export KUBEBUILDER_ASSETS="$(hack/build-controlplane.sh)"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/controlplane"

version_of() { awk -v m="$1" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$mod/go.mod"; }
k8s="$(version_of k8s.io/kubernetes)"
etcd="$(version_of go.etcd.io/etcd/server/v3)"
key="k8s-${k8s}-etcd-${etcd}-$(go env GOOS)-$(go env GOARCH)"

cache_root="${SMAREGI_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/smaregi-operator/controlplane}"
dir="$cache_root/$key"

if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" && -x "$dir/kubectl" ]]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$cache_root"
tmp="$(mktemp -d "$cache_root/.build-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

build() {
  local name="$1" pkg="$2" start
  start=$(date +%s)
  echo ">> building $name ($pkg) into $dir; first build takes several minutes" >&2
  (cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/$name" "$pkg")
  echo ">> $name built in $(( $(date +%s) - start ))s" >&2
}

build etcd ./etcd
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubectl k8s.io/kubernetes/cmd/kubectl

mkdir -p "$dir"
mv "$tmp"/etcd "$tmp"/kube-apiserver "$tmp"/kubectl "$dir"/
echo "$dir"
