// Package docs keeps the README's layout table true: a reader should find
// every package of the module in it, so that they know where a change
// belongs. A new package fails this test until the table names it.
package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestLayoutTableNamesEveryPackage: each package directory of the module
// (`go list ./...`) is named in the first column of README.md's layout
// table, itself or through a parent folder (`hack/` covers hack/*,
// `internal/inventory` its backends).
func TestLayoutTableNamesEveryPackage(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	named := layoutPaths(string(readme))
	if len(named) < 10 {
		t.Fatalf("README.md: found %d paths in the layout table (%v); is the table under `## Layout` still there?", len(named), named)
	}
	cmd := exec.Command("go", "list", "-f", "{{.Dir}}", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		rel = filepath.ToSlash(rel)
		if !covered(rel, named) {
			t.Errorf("package %s is not in README.md's layout table: add a row that says what it is for", rel)
		}
	}
}

func TestCovered(t *testing.T) {
	named := []string{"hack", "internal/inventory", "cmd"}
	for p, want := range map[string]bool{
		"hack/benchsummary":            true,
		"internal/inventory/boltstore": true,
		"internal/inventorytest":       false,
		"cmd":                          true,
		"internal/mirror":              false,
	} {
		if got := covered(p, named); got != want {
			t.Errorf("covered(%q) = %v, want %v", p, got, want)
		}
	}
}

func covered(pkg string, named []string) bool {
	for _, n := range named {
		if pkg == n || strings.HasPrefix(pkg, n+"/") {
			return true
		}
	}
	return false
}

var backticked = regexp.MustCompile("`([^`]+)`")

// layoutPaths returns the paths in the first column of the table after
// "## Layout", as folders ("cmd/main.go" names cmd).
func layoutPaths(readme string) []string {
	_, after, ok := strings.Cut(readme, "\n## Layout")
	if !ok {
		return nil
	}
	if i := strings.Index(after, "\n## "); i >= 0 {
		after = after[:i]
	}
	var paths []string
	for _, line := range strings.Split(after, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
			p := strings.TrimSuffix(m[1], "/")
			if strings.HasSuffix(p, ".go") {
				p = filepath.ToSlash(filepath.Dir(p))
			}
			paths = append(paths, p)
		}
	}
	return paths
}
