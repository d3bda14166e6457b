// Command imagebuild assembles a single-layer OCI image around one static
// binary and writes it as an image archive, with no Docker engine, no base
// image and no registry: the build machines reach none of them.
//
// The image holds what the operator's distroless base would give it and
// nothing else: the binary, the CA bundle (Smaregi's endpoints are HTTPS), an
// /etc/passwd and /etc/group naming the nonroot user 65532, and /tmp. There
// is no shell. Time zones come with the binary (it is built with the
// timetzdata tag), so no zoneinfo tree is copied from the build machine.
//
// The archive is both an OCI image layout (oci-layout, index.json, blobs/)
// and a docker-save archive (manifest.json pointing at the same blobs), as
// `docker save` writes since Docker 25, so that `podman load`,
// `ctr images import`, `kind load image-archive` and `crane push` all take it.
//
// Every timestamp is fixed (SOURCE_DATE_EPOCH, default 0) and every file's
// owner and mode is set, so the same binary gives the same digest on any
// machine: the digest (of the image manifest) is printed on stdout.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type options struct {
	binary   string
	inImage  string
	caBundle string
	ref      string
	out      string
	user     string
	arch     string
	labels   map[string]string
	epoch    time.Time
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	var o options
	var labels multiFlag
	fs.StringVar(&o.binary, "binary", "", "the static binary to put in the image (required)")
	fs.StringVar(&o.inImage, "path", "/manager", "where the binary goes in the image; it is the entrypoint")
	fs.StringVar(&o.caBundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt",
		"CA bundle copied to /etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates package); empty: none")
	fs.StringVar(&o.ref, "tag", "", "image reference recorded in the archive, e.g. ghcr.io/stocksync/smaregi-operator:dev (required)")
	fs.StringVar(&o.out, "out", "", "the archive to write (required)")
	fs.StringVar(&o.user, "user", "65532:65532", "the user the image runs as")
	fs.StringVar(&o.arch, "arch", runtime.GOARCH, "the binary's architecture")
	fs.Var(&labels, "label", "image label KEY=VALUE (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.binary == "" || o.ref == "" || o.out == "" {
		fs.Usage()
		return errors.New("--binary, --tag and --out are required")
	}
	if !strings.HasPrefix(o.inImage, "/") {
		return fmt.Errorf("--path %q: must be absolute", o.inImage)
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	o.epoch = epoch
	o.labels = map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		o.labels[k] = v
	}

	img, err := build(o)
	if err != nil {
		return err
	}
	if err := writeArchive(o.out, o.ref, img); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, digest.String())
	return nil
}

// sourceDateEpoch is the one timestamp of every file and of the image config
// (https://reproducible-builds.org/specs/source-date-epoch/).
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

// build returns the image: one layer over nothing.
func build(o options) (v1.Image, error) {
	layerTar, err := rootfs(o)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		History:   v1.History{Created: v1.Time{Time: o.epoch}, CreatedBy: "hack/imagebuild: " + path.Base(o.inImage)},
		MediaType: types.OCILayer,
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = o.arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: o.epoch}
	cf.Config = v1.Config{
		Entrypoint: []string{o.inImage},
		User:       o.user,
		WorkingDir: "/",
		Env:        []string{"PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		Labels:     o.labels,
	}
	if o.caBundle == "" {
		cf.Config.Env = []string{"PATH=/"}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// rootfs is the layer: an uncompressed tar with fixed owners, modes and
// times, entries in a fixed order.
func rootfs(o options) ([]byte, error) {
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return nil, fmt.Errorf("binary: %w", err)
	}
	if !isStaticELF(bin) {
		return nil, fmt.Errorf("binary %s: not a static ELF executable (build it with CGO_ENABLED=0)", o.binary)
	}
	uid, gid, err := parseUser(o.user)
	if err != nil {
		return nil, err
	}
	files := map[string]entry{
		strings.TrimPrefix(o.inImage, "/"): {mode: 0o755, data: bin},
		"tmp":                              {dir: true, mode: 0o1777},
	}
	if o.caBundle != "" {
		ca, err := os.ReadFile(o.caBundle)
		if err != nil {
			return nil, fmt.Errorf("CA bundle (install Debian's ca-certificates, or pass --ca-bundle): %w", err)
		}
		files["etc/ssl/certs/ca-certificates.crt"] = entry{mode: 0o644, data: ca}
	}
	{
		files["etc/passwd"] = entry{mode: 0o644, data: []byte(fmt.Sprintf(
			"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, gid))}
		files["etc/group"] = entry{mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", gid))}
		files["home/nonroot"] = entry{dir: true, mode: 0o700, uid: uid, gid: gid}
	}
	// Parent directories of every entry, so the layer stands on its own.
	for name := range files {
		for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := files[d]; !ok {
				files[d] = entry{dir: true, mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := files[n]
		h := &tar.Header{
			Name:    n,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: o.epoch,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !e.dir {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type entry struct {
	dir      bool
	mode     int64
	uid, gid int
	data     []byte
}

func parseUser(s string) (int, int, error) {
	u, g, ok := strings.Cut(s, ":")
	if !ok {
		g = u
	}
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("--user %q: want numeric UID[:GID] (the image has no user database to resolve names)", s)
	}
	return uid, gid, nil
}

// isStaticELF reports whether b is an ELF executable without a program
// interpreter (PT_INTERP): the image has no dynamic loader or libc.
func isStaticELF(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return f.Type == elf.ET_EXEC || f.Type == elf.ET_DYN
}

// writeArchive writes img as an OCI image layout in a tar that also carries
// docker-save's manifest.json, both naming ref.
func writeArchive(out, ref string, img v1.Image) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	mDigest, err := img.Digest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cDigest, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	type blob struct {
		digest v1.Hash
		data   []byte
	}
	blobs := []blob{{mDigest, manifest}, {cDigest, config}}
	var layerPaths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		blobs = append(blobs, blob{d, data})
		layerPaths = append(layerPaths, blobPath(d))
	}

	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIImageIndex,
		"manifests": []map[string]any{{
			"mediaType": types.OCIManifestSchema1,
			"digest":    mDigest.String(),
			"size":      len(manifest),
			"annotations": map[string]string{
				"io.containerd.image.name":          ref,
				"org.opencontainers.image.ref.name": ref,
			},
		}},
	})
	if err != nil {
		return err
	}
	dockerManifest, err := json.Marshal([]map[string]any{{
		"Config":   blobPath(cDigest),
		"RepoTags": []string{ref},
		"Layers":   layerPaths,
	}})
	if err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".imagebuild-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	epoch := time.Unix(0, 0).UTC()
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)),
			ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir, Format: tar.FormatPAX})
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, b := range blobs {
		p := blobPath(b.digest)
		if seen[p] {
			continue
		}
		seen[p] = true
		if err := put(p, b.data); err != nil {
			return err
		}
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := put("index.json", index); err != nil {
		return err
	}
	if err := put("manifest.json", dockerManifest); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }
