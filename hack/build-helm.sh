#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy (see hack/helm/go.mod) into a
# cache outside the checkout, keyed by its version, and prints the binary's
# path on stdout. A second run with the binary present only prints the path,
# so `make test` stays fast.
#
# Progress goes to stderr; only the path goes to stdout, so callers can do
#   export HELM="$(hack/build-helm.sh)"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/helm"

version="$(awk '$1 == "require" && $2 == "helm.sh/helm/v4" {print $3; exit}' "$mod/go.mod")"
if [[ -z "$version" ]]; then
  echo "hack/build-helm.sh: no helm.sh/helm/v4 version in $mod/go.mod" >&2
  exit 1
fi
key="helm-${version}-$(go env GOOS)-$(go env GOARCH)"

cache_root="${SMAREGI_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/smaregi-operator/helm}"
bin="$cache_root/$key/helm"

if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache_root"
tmp="$(mktemp -d "$cache_root/.build-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
echo ">> building helm $version (helm.sh/helm/v4/cmd/helm) into $(dirname "$bin"); the first build takes a few minutes" >&2
(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/helm" helm.sh/helm/v4/cmd/helm)
echo ">> helm built in $(( $(date +%s) - start ))s" >&2

mkdir -p "$(dirname "$bin")"
mv "$tmp/helm" "$bin"
echo "$bin"
