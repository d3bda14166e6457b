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
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// The samples users copy must pass the API server's validation (the CRD's
// schema and CEL rules), checked with a server-side dry run.
func TestSamplesAreAcceptedByTheAPIServer(t *testing.T) {
	var data []byte
	for _, f := range []string{"smaregi_v1alpha1_smaregistore.yaml", "smaregi_v1alpha1_stockpool.yaml"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, "config", "samples", f))
		if err != nil {
			t.Fatal(err)
		}
		data = append(append(data, b...), "\n---\n"...)
	}
	ns := newNamespace(t, "samples")
	kinds := map[string]bool{}
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Fatalf("sample document: %v", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		obj.SetNamespace(ns)
		if err := kube.Create(context.Background(), obj, client.DryRunAll); err != nil {
			t.Errorf("the API server refuses the sample %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		kinds[obj.GetKind()] = true
	}
	if !kinds["SmaregiStore"] || !kinds["Secret"] || !kinds["StockPool"] {
		t.Fatalf("the sample files should hold a Secret, a SmaregiStore and a StockPool, found %v", kinds)
	}
}
