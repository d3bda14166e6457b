package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildHello builds testdata/hello as `make image` builds the operator.
func buildHello(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./testdata/hello")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func image(t *testing.T, args ...string) (digest string, archive string) {
	t.Helper()
	archive = filepath.Join(t.TempDir(), "image.tar")
	var out bytes.Buffer
	if err := run(append(args, "--out", archive), &out); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out.String()), archive
}

// TestReproducible: two builds of the same source in different folders, at
// different times, give the same image digest and the same archive bytes.
func TestReproducible(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d1, a1 := image(t, "--binary", buildHello(t, t.TempDir()), "--tag", "example.test/hello:v1", "--ca-bundle", ca)
	d2, a2 := image(t, "--binary", buildHello(t, t.TempDir()), "--tag", "example.test/hello:v1", "--ca-bundle", ca)
	if !strings.HasPrefix(d1, "sha256:") || d1 != d2 {
		t.Fatalf("digests %q and %q, want one sha256 digest", d1, d2)
	}
	b1, _ := os.ReadFile(a1)
	b2, _ := os.ReadFile(a2)
	if !bytes.Equal(b1, b2) {
		t.Error("the two archives differ")
	}
	d3, _ := image(t, "--binary", buildHello(t, t.TempDir()), "--tag", "example.test/hello:v1", "--ca-bundle", ca,
		"--label", "a=b")
	if d3 == d1 {
		t.Error("a different config gave the same digest")
	}
}

// TestContents reads the archive as a loader does (manifest.json and
// index.json) and checks what the operator's image promises: the binary as
// entrypoint, user 65532, CA bundle, no shell, fixed times.
func TestContents(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("CA"), 0o644); err != nil {
		t.Fatal(err)
	}
	digest, archive := image(t, "--binary", buildHello(t, t.TempDir()), "--tag", "example.test/hello:v1", "--ca-bundle", ca)
	files := readTar(t, archive)

	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	mustJSON(t, files["index.json"], &index)
	if len(index.Manifests) != 1 || index.Manifests[0].Digest != digest ||
		index.Manifests[0].Annotations["io.containerd.image.name"] != "example.test/hello:v1" {
		t.Fatalf("index.json = %s, want the one manifest %s named example.test/hello:v1", files["index.json"], digest)
	}
	if _, ok := files["oci-layout"]; !ok {
		t.Error("no oci-layout")
	}
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	mustJSON(t, files["manifest.json"], &docker)
	if len(docker) != 1 || len(docker[0].Layers) != 1 || docker[0].RepoTags[0] != "example.test/hello:v1" {
		t.Fatalf("manifest.json = %s", files["manifest.json"])
	}
	var cfg struct {
		Architecture string
		OS           string
		Config       struct {
			Entrypoint []string
			User       string
		}
	}
	mustJSON(t, files[docker[0].Config], &cfg)
	if cfg.OS != "linux" || cfg.Config.User != "65532:65532" || len(cfg.Config.Entrypoint) != 1 ||
		cfg.Config.Entrypoint[0] != "/manager" {
		t.Errorf("config = %+v, want linux, user 65532:65532, entrypoint /manager", cfg)
	}

	zr, err := gzip.NewReader(bytes.NewReader(files[docker[0].Layers[0]]))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	layer := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		layer[strings.TrimSuffix(h.Name, "/")] = h
		if h.ModTime.Unix() != 0 {
			t.Errorf("%s: mtime %v, want the epoch", h.Name, h.ModTime)
		}
	}
	for _, want := range []string{"manager", "etc/ssl/certs/ca-certificates.crt", "etc/passwd", "etc/group", "tmp"} {
		if layer[want] == nil {
			t.Errorf("layer lacks %s", want)
		}
	}
	if h := layer["manager"]; h != nil && h.Mode != 0o755 {
		t.Errorf("manager mode %o", h.Mode)
	}
	for name := range layer {
		if strings.HasSuffix(name, "/sh") || strings.HasPrefix(name, "bin") {
			t.Errorf("layer has %s: the image has no shell", name)
		}
	}
}

func TestRefusesADynamicBinary(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine to try")
	}
	var out bytes.Buffer
	err = run([]string{"--binary", sh, "--tag", "x:y", "--out", filepath.Join(t.TempDir(), "x.tar")}, &out)
	if err == nil || !strings.Contains(err.Error(), "static") {
		t.Fatalf("err = %v, want a refusal naming a static binary", err)
	}
}

func readTar(t *testing.T, p string) map[string][]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}
