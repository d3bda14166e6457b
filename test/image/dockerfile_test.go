// Package image checks the operator's image recipe without building an
// image: what the Dockerfile's build stage copies, after .dockerignore, must
// compile ./cmd. A Dockerfile that copied a list of folders once broke
// silently when a new top-level package appeared; this test is what fails
// instead of a user's `make docker-build`.
package image

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Dockerfile")); err != nil {
		t.Fatalf("no Dockerfile at the repository root: %v", err)
	}
	return root
}

// TestDockerfileContextBuildsTheOperator copies what the Dockerfile's build
// stage copies, as Docker would (the context less .dockerignore), into an
// empty folder and runs the build stage's `go build` there.
func TestDockerfileContextBuildsTheOperator(t *testing.T) {
	root := repoRoot(t)
	ignore, err := readDockerignore(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	copies, buildCmd, err := builderStage(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) == 0 || buildCmd == nil {
		t.Fatalf("Dockerfile: no COPY or no `go build` in the build stage (copies %v, build %v)", copies, buildCmd)
	}
	work := t.TempDir()
	for _, c := range copies {
		for _, src := range c.srcs {
			if err := copyContext(root, src, filepath.Join(work, c.dest), ignore); err != nil {
				t.Fatalf("COPY %s %s: %v", src, c.dest, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(work, "cmd", "main.go")); err != nil {
		t.Fatalf("the build stage does not copy cmd/main.go: %v", err)
	}
	// No test file may reach the image's build (they are not needed and
	// .dockerignore says so); a sign the patterns are read as Docker reads them.
	_ = filepath.WalkDir(work, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, "_test.go") {
			t.Errorf("%s reached the build context", strings.TrimPrefix(p, work))
		}
		return nil
	})

	out := filepath.Join(t.TempDir(), "manager")
	// The Dockerfile's flags, with -o pointed outside the context. The
	// module cache of this machine stands in for `go mod download`.
	args := append([]string{"build"}, buildCmd...)
	args = replaceOutput(args, out)
	cmd := exec.Command("go", args...)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s in the Dockerfile's context: %v\n%s", strings.Join(args, " "), err, b)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		t.Fatalf("no binary built: %v", err)
	}
}

// TestDockerignoreReading pins how readDockerignore matches, so the test
// above cannot pass by ignoring nothing or everything.
func TestDockerignoreReading(t *testing.T) {
	ig := ignoreRules{top: map[string]bool{"docs": true, "*.md": true}, anywhere: []string{"*_test.go", "testdata"}}
	for p, want := range map[string]bool{
		"docs":                       true,
		"docs/a.md":                  true,
		"README.md":                  true,
		"api/README.md":              false,
		"cmd/main.go":                false,
		"cmd/main_test.go":           true,
		"internal/x/testdata/a.json": true,
		"internal/x/data.go":         false,
	} {
		if got := ig.ignored(p); got != want {
			t.Errorf("ignored(%q) = %v, want %v", p, got, want)
		}
	}
	if _, err := parseIgnoreLine("internal/**/foo"); err == nil {
		t.Error("a pattern this reader does not understand was accepted")
	}
}

type copyInstr struct {
	srcs []string
	dest string
}

// builderStage returns the COPY instructions (not --from) and the
// `go build` arguments of the Dockerfile's first stage.
func builderStage(dockerfile string) ([]copyInstr, []string, error) {
	f, err := os.Open(dockerfile)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	var copies []copyInstr
	var build []string
	stages := 0
	for _, l := range lines {
		fields := strings.Fields(l)
		if len(fields) == 0 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			stages++
		case "COPY":
			if stages != 1 {
				continue
			}
			args := fields[1:]
			for len(args) > 0 && strings.HasPrefix(args[0], "--") {
				if strings.HasPrefix(args[0], "--from") {
					return nil, nil, fmt.Errorf("COPY --from in the build stage: %s", l)
				}
				args = args[1:]
			}
			if len(args) < 2 {
				return nil, nil, fmt.Errorf("COPY without a destination: %s", l)
			}
			copies = append(copies, copyInstr{srcs: args[:len(args)-1], dest: args[len(args)-1]})
		case "RUN":
			if stages != 1 {
				continue
			}
			for i, w := range fields {
				if w == "go" && i+1 < len(fields) && fields[i+1] == "build" {
					build = unquote(fields[i+2:])
				}
			}
		}
	}
	return copies, build, nil
}

// unquote drops the shell quotes of -ldflags='-s -w' as the shell would,
// re-joining words a quote spans.
func unquote(words []string) []string {
	var out []string
	var open string
	for _, w := range words {
		if open != "" {
			open += " " + w
			if strings.HasSuffix(w, "'") {
				out = append(out, strings.ReplaceAll(open, "'", ""))
				open = ""
			}
			continue
		}
		if strings.Count(w, "'") == 1 {
			open = w
			continue
		}
		out = append(out, strings.ReplaceAll(w, "'", ""))
	}
	return out
}

func replaceOutput(args []string, out string) []string {
	for i := range args {
		if args[i] == "-o" && i+1 < len(args) {
			args[i+1] = out
		}
	}
	return args
}

// ignoreRules is .dockerignore in the two forms it uses: a top-level name
// or glob, and **/GLOB for a name anywhere.
type ignoreRules struct {
	top      map[string]bool
	anywhere []string
}

func readDockerignore(p string) (ignoreRules, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return ignoreRules{}, err
	}
	ig := ignoreRules{top: map[string]bool{}}
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		anywhere, err := parseIgnoreLine(l)
		if err != nil {
			return ignoreRules{}, fmt.Errorf(".dockerignore line %d: %w", i+1, err)
		}
		if anywhere {
			ig.anywhere = append(ig.anywhere, strings.TrimPrefix(l, "**/"))
		} else {
			ig.top[l] = true
		}
	}
	return ig, nil
}

func parseIgnoreLine(l string) (anywhere bool, err error) {
	if strings.HasPrefix(l, "!") {
		return false, fmt.Errorf("%q: exceptions are not read by this test; extend it", l)
	}
	rest := strings.TrimPrefix(l, "**/")
	if strings.Contains(rest, "/") {
		return false, fmt.Errorf("%q: only NAME and **/NAME are read by this test; extend it", l)
	}
	return strings.HasPrefix(l, "**/"), nil
}

// ignored reports whether the context path p (slash-separated, relative)
// is left out: its first element matches a top-level rule, or any element
// matches a **/ rule.
func (ig ignoreRules) ignored(p string) bool {
	elems := strings.Split(p, "/")
	for pat := range ig.top {
		if ok, _ := path.Match(pat, elems[0]); ok {
			return true
		}
	}
	for _, e := range elems {
		for _, pat := range ig.anywhere {
			if ok, _ := path.Match(pat, e); ok {
				return true
			}
		}
	}
	return false
}

// copyContext copies src (relative to the context root, "." for all) to
// dest, skipping what .dockerignore leaves out.
func copyContext(root, src, dest string, ig ignoreRules) error {
	base := filepath.Join(root, filepath.FromSlash(src))
	return filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && ig.ignored(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		relSrc, _ := filepath.Rel(base, p)
		target := filepath.Join(dest, relSrc)
		if relSrc == "." && !d.IsDir() {
			target = filepath.Join(dest, d.Name()) // COPY FILE... DIR/
		}
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
