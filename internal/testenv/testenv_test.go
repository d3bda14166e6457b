package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

func TestStartServesTheCRD(t *testing.T) {
	cfg, stop := Start(t)
	defer stop()
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	var list smaregiv1alpha1.SmaregiStoreList
	if err := c.List(context.Background(), &list, client.InNamespace("default")); err != nil {
		t.Fatalf("listing SmaregiStores: %v (CRD not installed?)", err)
	}
}

func TestMissingAssetsSaysHowToFixIt(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", "")
	_, _, err := StartMain()
	if err == nil || !strings.Contains(err.Error(), "hack/build-controlplane.sh") {
		t.Fatalf("want an error pointing at hack/build-controlplane.sh, got %v", err)
	}
}

func TestRepoRootHasTheCRDs(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "config", "crd", "bases")); err != nil {
		t.Fatalf("root %q has no config/crd/bases: %v", root, err)
	}
}
