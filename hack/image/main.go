package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The image's user: distroless's "nonroot", which config/manager's Deployment runs as.
const (
	nonrootUID = 65532
	binaryPath = "kubelvs" // at the root: /kubelvs
)

// ErrNotStatic means the binary needs a dynamic loader the image does not have.
var ErrNotStatic = errors.New("image: the binary is not statically linked (build it with CGO_ENABLED=0: make build)")

type options struct {
	binary, out, tag, arch string
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/kubelvs", "the static kubelvs binary (make build)")
	flag.StringVar(&o.out, "out", "bin/kubelvs-image.tar", "where to write the image (docker save format)")
	flag.StringVar(&o.tag, "tag", "ghcr.io/kubelvs/kubelvs:dev", "the image's name in the tarball")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "the binary's architecture, recorded in the image config")
	flag.Parse()
	img, err := build(o)
	if err == nil {
		err = write(img, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	d, _ := img.Digest()
	fmt.Printf("wrote %s (%s, %s)\n", o.out, o.tag, d)
}

// build assembles the image: a base layer, the binary's layer, the config.
func build(o options) (v1.Image, error) {
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return nil, fmt.Errorf("image: read binary: %w", err)
	}
	if err := checkStatic(bin); err != nil {
		return nil, err
	}
	base, err := layer(baseFiles())
	if err != nil {
		return nil, err
	}
	app, err := layer([]file{{name: binaryPath, mode: 0o755, body: bin}})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, base, app)
	if err != nil {
		return nil, fmt.Errorf("image: append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.arch
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()} // reproducible: the same binary, the same digest
	cf.Config.Entrypoint = []string{"/" + binaryPath}
	cf.Config.User = fmt.Sprintf("%d:%d", nonrootUID, nonrootUID)
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":  "kubelvs",
		"org.opencontainers.image.source": "https://github.com/kubelvs/kubelvs",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: set config: %w", err)
	}
	return img, nil
}

func write(img v1.Image, o options) error {
	ref, err := name.NewTag(o.tag)
	if err != nil {
		return fmt.Errorf("image: tag %q: %w", o.tag, err)
	}
	if err := tarball.WriteToFile(o.out, ref, img); err != nil {
		return fmt.Errorf("image: write %s: %w", o.out, err)
	}
	return nil
}

// checkStatic refuses an ELF binary with a program interpreter or needed shared libraries.
func checkStatic(bin []byte) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("image: the binary is not ELF: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return ErrNotStatic
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return fmt.Errorf("%w: needs %v", ErrNotStatic, libs)
	}
	return nil
}

type file struct {
	name string
	mode int64
	dir  bool
	body []byte
}

// baseFiles is what the image has besides the binary: the users and groups of distroless's
// static image (root, nobody, nonroot) and an empty /tmp. No CA bundle: kubelvs talks only to
// the API server, whose CA comes with the ServiceAccount token.
func baseFiles() []file {
	return []file{
		{name: "etc", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, body: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{name: "home", mode: 0o755, dir: true},
		{name: "home/nonroot", mode: 0o700, dir: true},
		{name: "tmp", mode: 0o1777, dir: true},
	}
}

// layer makes an uncompressed-tar layer of files, owned by root except /home/nonroot, with a
// fixed modification time.
func layer(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if f.name == "home/nonroot" {
			h.Uid, h.Gid = nonrootUID, nonrootUID
		}
		if f.dir {
			h.Typeflag, h.Name = tar.TypeDir, f.name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, fmt.Errorf("image: layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return l, nil
}
