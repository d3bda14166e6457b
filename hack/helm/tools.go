//go:build tools

// Package tools pins the helm CLI for hack/build-helm.sh.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
