package main

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// kubelvsBinary builds the product binary as `make build` does.
func kubelvsBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kubelvs")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/kubelvs")
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kubelvs: %v\n%s", err, out)
	}
	return bin
}

// TestImage writes the image of the real binary and reads the tarball back as an image
// consumer would: config, layers, the binary's bytes.
func TestImage(t *testing.T) {
	bin := kubelvsBinary(t)
	o := options{binary: bin, out: filepath.Join(t.TempDir(), "image.tar"), tag: "ghcr.io/kubelvs/kubelvs:test", arch: "amd64"}
	img, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(img, o); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(o.tag)
	got, err := tarball.ImageFromPath(o.out, &tag)
	if err != nil {
		t.Fatalf("reading the tarball back: %v", err)
	}
	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/kubelvs"}) || cf.Config.User != "65532:65532" || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config: entrypoint %q user %q os %q arch %q", cf.Config.Entrypoint, cf.Config.User, cf.OS, cf.Architecture)
	}
	files := map[string][]byte{}
	modes := map[string]int64{}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Errorf("%d layers, want 2 (base, binary)", len(layers))
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			files[h.Name], modes[h.Name] = b, h.Mode
		}
		rc.Close()
	}
	want, _ := os.ReadFile(bin)
	if sha256.Sum256(files["kubelvs"]) != sha256.Sum256(want) {
		t.Errorf("/kubelvs in the image (%d bytes) is not the binary (%d bytes)", len(files["kubelvs"]), len(want))
	}
	if modes["kubelvs"] != 0o755 || modes["tmp/"] != 0o1777 {
		t.Errorf("modes: /kubelvs %o, /tmp %o", modes["kubelvs"], modes["tmp/"])
	}
	if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532:") || !strings.Contains(string(files["etc/group"]), "nonroot:x:65532:") {
		t.Errorf("no nonroot user 65532:\n%s%s", files["etc/passwd"], files["etc/group"])
	}

	// The same binary gives the same image.
	again, err := build(o)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	d3, _ := got.Digest()
	if d1 != d2 || d1 != d3 {
		t.Errorf("digests differ: built %s, rebuilt %s, read back %s", d1, d2, d3)
	}
}

// TestRefusesDynamicBinaries: a binary that needs a loader would not start in the image.
func TestRefusesDynamicBinaries(t *testing.T) {
	dyn, err := exec.LookPath("ls")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := build(options{binary: dyn, arch: "amd64"}); !errors.Is(err, ErrNotStatic) {
		t.Errorf("%s: %v, want ErrNotStatic", dyn, err)
	}
	notELF := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := build(options{binary: notELF}); err == nil || !strings.Contains(err.Error(), "not ELF") {
		t.Errorf("a script: %v", err)
	}
}
