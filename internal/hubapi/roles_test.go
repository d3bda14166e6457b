package hubapi

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// TestRoleNamesAreTheInstalledOnes: the names the 403 answer and the docs
// use are what kustomize installs from config/rbac (namePrefix + name).
func TestRoleNamesAreTheInstalledOnes(t *testing.T) {
	root := filepath.Join("..", "..")
	kust, err := os.ReadFile(filepath.Join(root, "config", "default", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^namePrefix: (\S+)$`).FindSubmatch(kust)
	if m == nil {
		t.Fatal("config/default/kustomization.yaml has no namePrefix")
	}
	for file, want := range map[string]string{"hub_stock_viewer_role.yaml": StockViewerRole, "hub_adjuster_role.yaml": AdjusterRole} {
		data, err := os.ReadFile(filepath.Join(root, "config", "rbac", file))
		if err != nil {
			t.Fatal(err)
		}
		var role rbacv1.ClusterRole
		if err := yaml.Unmarshal(data, &role); err != nil {
			t.Fatal(err)
		}
		if got := string(m[1]) + role.Name; got != want {
			t.Errorf("%s installs as %q, the hub API names %q", file, got, want)
		}
	}
}
