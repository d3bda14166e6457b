package hubapi

import (
	"os"
	"path/filepath"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/stocksync/smaregi-operator/internal/testenv"
)

// TestLeaderElectionRoleGrantsOnlyWhatItUses: the shipped leader-election
// Role grants Leases and Events only; controller-runtime's lock is a Lease,
// so ConfigMaps (which other software stores configuration in) are not
// needed (issue 9 §8). It lives here beside the other checks of the
// shipped roles.
func TestLeaderElectionRoleGrantsOnlyWhatItUses(t *testing.T) {
	root, err := testenv.RepoRoot()
	must(t, err)
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "leader_election_role.yaml"))
	must(t, err)
	var role rbacv1.Role
	must(t, yaml.UnmarshalStrict(data, &role))
	allowed := map[string]bool{"coordination.k8s.io/leases": true, "/events": true}
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				if !allowed[g+"/"+res] {
					t.Errorf("leader-election Role grants %q in group %q", res, g)
				}
			}
		}
	}
}
