/*
Copyright 2026 The smaregi-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package e2e

import (
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/webhookserver"
)

// renderedDeployment renders a kustomization and returns its manager
// Deployment (and fails when there is none).
func renderedDeployment(t *testing.T, dir string) *appsv1.Deployment {
	t.Helper()
	for _, doc := range renderKustomize(t, dir) {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil || u.GetKind() != "Deployment" {
			continue
		}
		d := &appsv1.Deployment{}
		mustUnmarshal(t, doc, d)
		return d
	}
	t.Fatalf("%s renders no Deployment", dir)
	return nil
}

// managerContainer returns the Deployment's manager container.
func managerContainer(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == "manager" {
			return c
		}
	}
	t.Fatal("no manager container")
	return nil
}

// TestPostgresOverlayTakesThePasswordFromASecret: config/postgres gives the
// operator a DSN without a password and the password as PGPASSWORD from a
// secretKeyRef, so it is in no argument of the Pod.
func TestPostgresOverlayTakesThePasswordFromASecret(t *testing.T) {
	c := managerContainer(t, renderedDeployment(t, "config/postgres"))
	var dsn string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--inventory="); ok {
			dsn = v
		}
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme != "postgres" {
		t.Fatalf("--inventory=%q is not a postgres:// URL", dsn)
	}
	if _, has := u.User.Password(); has || u.Query().Has("password") {
		t.Errorf("the DSN in the arguments carries a password: %s", dsn)
	}
	var fromSecret bool
	for _, e := range c.Env {
		if e.Name == "PGPASSWORD" {
			fromSecret = e.Value == "" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
		}
	}
	if !fromSecret {
		t.Errorf("PGPASSWORD is not taken from a Secret: %+v", c.Env)
	}
}

// drainSeconds is the longest the operator's servers drain after SIGTERM.
var drainSeconds = int64(max(webhookserver.DefaultShutdownTimeout, hubapi.DefaultShutdownTimeout) / time.Second)

// TestShutdownLetsEndpointsGoFirst: a preStop sleep keeps the servers
// accepting while the Pod's endpoints are removed, and the grace period
// covers that sleep plus the servers' drain, so sends during a restart are
// neither refused nor cut. config/default also ships a PodDisruptionBudget.
func TestShutdownLetsEndpointsGoFirst(t *testing.T) {
	for _, dir := range []string{"config/default", "config/postgres", "config/namespaced"} {
		d := renderedDeployment(t, dir)
		c := managerContainer(t, d)
		var sleep int64
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			sleep = c.Lifecycle.PreStop.Sleep.Seconds
		}
		if sleep < 5 {
			t.Errorf("%s: preStop sleep %ds; want at least 5 s for endpoints to be removed first", dir, sleep)
		}
		grace := int64(30)
		if p := d.Spec.Template.Spec.TerminationGracePeriodSeconds; p != nil {
			grace = *p
		}
		if grace <= sleep+drainSeconds {
			t.Errorf("%s: terminationGracePeriodSeconds %d must exceed the preStop sleep (%d s) plus the drain (%d s)", dir, grace, sleep, drainSeconds)
		}
	}
	var pdb bool
	for _, doc := range renderKustomize(t, "config/default") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err == nil && u.GetKind() == "PodDisruptionBudget" {
			pdb = true
		}
	}
	if !pdb {
		t.Error("config/default ships no PodDisruptionBudget")
	}
}

// TestHubAPITLSComponent: config/components/hub-api-tls, added to
// config/default, mounts the TLS Secret and points the operator's TLS flags
// at the files in it. config/default itself ships a NetworkPolicy.
func TestHubAPITLSComponent(t *testing.T) {
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(repoRoot, p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	kustomization := "resources:\n- " + rel("config/default") + "\ncomponents:\n- " + rel("config/components/hub-api-tls") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o600); err != nil {
		t.Fatal(err)
	}
	d := renderedDeployment(t, dir)
	c := managerContainer(t, d)
	var mountPath, secret string
	for _, m := range c.VolumeMounts {
		if m.Name == "hub-api-tls" {
			mountPath = m.MountPath
		}
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "hub-api-tls" && v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	if secret == "" || mountPath == "" {
		t.Fatalf("the TLS Secret is not mounted: Secret %q at %q", secret, mountPath)
	}
	for _, want := range []string{"--api-tls-cert-file=" + mountPath + "/tls.crt", "--api-tls-key-file=" + mountPath + "/tls.key"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", c.Args, want)
		}
	}

	var ports []string
	for _, doc := range renderKustomize(t, "config/default") {
		np := &networkingv1.NetworkPolicy{}
		if err := yaml.Unmarshal(doc, np); err != nil || np.Kind != "NetworkPolicy" {
			continue
		}
		for _, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				ports = append(ports, p.Port.String())
			}
		}
	}
	slices.Sort(ports)
	if want := []string{"hub-api", "metrics", "probes", "receiver"}; !slices.Equal(ports, want) {
		t.Errorf("config/default's NetworkPolicy admits ports %v, want %v", ports, want)
	}
}
