//go:build tools

// Package controlplane pins the commands that hack/build-controlplane.sh builds:
// the test control plane (kube-apiserver, kubectl; etcd is ./etcd) and the
// rest of a one-node cluster (kubelet, kube-controller-manager,
// kube-scheduler) that hack/node.sh runs. They are built in one `go build` so
// the packages they share compile once.
package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
