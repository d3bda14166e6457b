package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
)

// The chart's README lists every value from the "# --" comments in
// values.yaml (the helm-docs convention), between these markers. Run
// `UPDATE_CHART_README=1 go test -run TestChartReadme ./...` in test/chart to
// rewrite it.
const (
	valuesBegin = "<!-- values:begin (generated from values.yaml by test/chart; do not edit) -->"
	valuesEnd   = "<!-- values:end -->"
)

func TestChartReadmeListsEveryValue(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var rows []string
	var undocumented []string
	walkValues(doc.Content[0], "", &rows, &undocumented)
	for _, u := range undocumented {
		t.Errorf("values.yaml: %s has no \"# --\" comment (nor has any map above it)", u)
	}
	table := "| Key | Type | Default | Description |\n| --- | --- | --- | --- |\n" + strings.Join(rows, "\n") + "\n"

	path := filepath.Join(chartDir, "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(readme), valuesBegin)
	_, after, ok2 := strings.Cut(rest, valuesEnd)
	if !ok1 || !ok2 {
		t.Fatalf("%s lacks the markers %q and %q", path, valuesBegin, valuesEnd)
	}
	want := before + valuesBegin + "\n" + table + valuesEnd + after
	if want == string(readme) {
		return
	}
	if os.Getenv("UPDATE_CHART_README") != "" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("charts/smaregi-operator/README.md is out of date with values.yaml: run UPDATE_CHART_README=1 go test -run TestChartReadme ./... in test/chart")
}

// walkValues documents a key with a "# --" comment as one row (its whole
// value as the default) and descends into undocumented maps.
func walkValues(m *yamlv3.Node, prefix string, rows, undocumented *[]string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		path := prefix + k.Value
		if desc, ok := docComment(k.HeadComment); ok {
			*rows = append(*rows, fmt.Sprintf("| `%s` | %s | `%s` | %s |", path, typeOf(v), defaultOf(v), strings.ReplaceAll(desc, "|", `\|`)))
			continue
		}
		if v.Kind == yamlv3.MappingNode && len(v.Content) > 0 {
			walkValues(v, path+".", rows, undocumented)
			continue
		}
		*undocumented = append(*undocumented, path)
	}
}

// docComment returns the text after "# --" of a key's head comment.
func docComment(c string) (string, bool) {
	_, doc, ok := strings.Cut(c, "# --")
	if !ok {
		return "", false
	}
	var words []string
	for line := range strings.Lines(doc) {
		words = append(words, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#")))
	}
	return strings.Join(strings.Fields(strings.Join(words, " ")), " "), true
}

func typeOf(v *yamlv3.Node) string {
	switch v.Tag {
	case "!!str":
		return "string"
	case "!!int":
		return "int"
	case "!!bool":
		return "bool"
	case "!!map":
		return "object"
	case "!!seq":
		return "list"
	}
	return strings.TrimPrefix(v.Tag, "!!")
}

func defaultOf(v *yamlv3.Node) string {
	var x any
	if err := v.Decode(&x); err != nil {
		return "?"
	}
	b, err := json.Marshal(x)
	if err != nil {
		return "?"
	}
	return string(b)
}
