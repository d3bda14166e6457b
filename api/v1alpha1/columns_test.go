package v1alpha1_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// TestREADMEWideColumnsMatchTheCRD: the columns the README shows for
// `kubectl get smaregistores -o wide` are the CRD's printer columns.
func TestREADMEWideColumnsMatchTheCRD(t *testing.T) {
	root := filepath.Join("..", "..")
	data, err := os.ReadFile(filepath.Join(root, "config", "crd", "bases", "smaregi.stocksync.io_smaregistores.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	want := []string{"NAME"}
	for _, c := range crd.Spec.Versions[0].AdditionalPrinterColumns {
		want = append(want, strings.ToUpper(c.Name))
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`kubectl get smaregistores -o wide +# ([A-Z -]+)\n`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no `kubectl get smaregistores -o wide   # COLUMNS` line")
	}
	if got := strings.Fields(string(m[1])); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("README shows %v, the CRD prints %v", got, want)
	}
}
