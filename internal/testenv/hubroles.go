package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// KustomizeNamePrefix is config/default's namePrefix: what `make deploy`
// puts before every name of config/rbac.
const KustomizeNamePrefix = "smaregi-operator-"

// InstallHubRoles creates the hub ClusterRoles of config/rbac under the
// names kustomize installs them with (KustomizeNamePrefix + name, i.e.
// hubapi.StockViewerRole and hubapi.AdjusterRole), so that make demo, the
// e2e tests and the docs all bind the names users find in their cluster.
func InstallHubRoles(ctx context.Context, c client.Client, repoRoot string) error {
	for _, f := range []string{"hub_stock_viewer_role.yaml", "hub_adjuster_role.yaml"} {
		data, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", f))
		if err != nil {
			return fmt.Errorf("reading the hub role %s: %w", f, err)
		}
		role := &rbacv1.ClusterRole{}
		if err := yaml.UnmarshalStrict(data, role); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		role.Name = KustomizeNamePrefix + role.Name
		if err := c.Create(ctx, role); err != nil {
			return fmt.Errorf("creating ClusterRole %s: %w", role.Name, err)
		}
	}
	return nil
}
