package dockerenv

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// debianSuite is the Debian release of every stand-in: that of the
	// official images the project names (golang:*-bookworm,
	// static-debian12).
	debianSuite = "bookworm"
	// defaultDebianMirror is used when this machine's apt configuration
	// names no mirror of debianSuite.
	defaultDebianMirror = "http://deb.debian.org/debian"
	// debootstrapTimeout bounds debootstrap (about 30 s here).
	debootstrapTimeout = 10 * time.Minute
	// localCAFolder is where Debian keeps the certificate authorities a
	// machine adds to the distribution's (update-ca-certificates).
	localCAFolder = "/usr/local/share/ca-certificates"
)

// aptSourceFiles are the apt configuration files debianMirror reads.
var aptSourceFiles = []string{"/etc/apt/sources.list"}

// debianMirror returns the mirror of debianSuite this machine's apt uses
// (one-line sources.list entries or deb822 .sources files), so that the
// stand-in comes from the mirror this machine is known to reach.
func debianMirror() string {
	files := append([]string{}, aptSourceFiles...)
	if more, err := filepath.Glob("/etc/apt/sources.list.d/*"); err == nil {
		files = append(files, more...)
	}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		if mirror := mirrorIn(string(raw)); mirror != "" {
			return mirror
		}
	}
	return defaultDebianMirror
}

// mirrorIn returns the first http(s) URI of apt sources text (either
// format) that serves debianSuite itself, not its -updates or -security.
func mirrorIn(sources string) string {
	var uris []string
	serves := false
	flush := func() string {
		defer func() { uris, serves = nil, false }()
		if serves && len(uris) > 0 {
			return uris[0]
		}
		return ""
	}
	scanner := bufio.NewScanner(strings.NewReader(sources))
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		fields := strings.Fields(line)
		switch {
		case line == "": // a deb822 stanza ends
			if m := flush(); m != "" {
				return m
			}
		case strings.HasPrefix(line, "#"):
		case fields[0] == "deb":
			// deb [options] uri suite components...
			rest := fields[1:]
			if len(rest) > 0 && strings.HasPrefix(rest[0], "[") {
				for len(rest) > 0 && !strings.HasSuffix(rest[0], "]") {
					rest = rest[1:]
				}
				if len(rest) > 0 {
					rest = rest[1:]
				}
			}
			if len(rest) >= 2 && rest[1] == debianSuite && isHTTP(rest[0]) {
				return rest[0]
			}
		case strings.EqualFold(fields[0], "URIs:"):
			for _, uri := range fields[1:] {
				if isHTTP(uri) {
					uris = append(uris, uri)
				}
			}
		case strings.EqualFold(fields[0], "Suites:"):
			for _, suite := range fields[1:] {
				serves = serves || suite == debianSuite
			}
		}
	}
	return flush()
}

// isHTTP reports whether uri is one debootstrap can fetch from.
func isHTTP(uri string) bool {
	return strings.HasPrefix(uri, "http://") || strings.HasPrefix(uri, "https://")
}

// localCAs returns the certificate authorities this machine added to
// Debian's (localCAFolder), by path relative to that folder.
func localCAs() (map[string][]byte, error) {
	cas := make(map[string][]byte)
	err := filepath.WalkDir(localCAFolder, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".crt") {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(localCAFolder, path)
		cas[rel] = raw
		return err
	})
	if os.IsNotExist(err) {
		return cas, nil
	}
	return cas, err
}

// debianInputs returns what the Debian stand-in is made of besides the
// suite: the mirror and this machine's local certificate authorities.
func debianInputs(*standInBuilder, string) ([]byte, error) {
	cas, err := localCAs()
	if err != nil {
		return nil, fmt.Errorf("read this machine's certificate authorities: %w", err)
	}
	var inputs bytes.Buffer
	fmt.Fprintf(&inputs, "debootstrap --variant=minbase --include=ca-certificates %s %s\n", debianSuite, debianMirror())
	names := make([]string, 0, len(cas))
	for name := range cas {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&inputs, "ca %s\n%s\n", name, cas[name])
	}
	return inputs.Bytes(), nil
}

// buildDebian makes the Debian stand-in: a minimal bookworm root file
// system by debootstrap, imported as image ref.
//
// It trusts the certificate authorities this machine added to Debian's:
// where the machine reaches the registries through a TLS-inspecting proxy,
// that proxy's authority is one, and without it the golang stand-in could
// not download a module here (x509: certificate signed by unknown
// authority). An official image pulled over the internet needs none.
func buildDebian(b *standInBuilder, ref, _, madeOf, hash string) error {
	debootstrap, err := exec.LookPath("debootstrap")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/debootstrap"); statErr != nil {
			return fmt.Errorf("debootstrap is not installed (on Debian, as root: apt-get install -y debootstrap, which `make deps` does)")
		}
		debootstrap = "/usr/sbin/debootstrap"
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("debootstrap needs root")
	}
	rootfs := b.tempDir("debian-rootfs")
	// debootstrap mounts /proc and /sys in the new system while it works;
	// a failed run can leave them mounted, and removing the folder would
	// then reach into them.
	b.tb.Cleanup(func() { unmountUnder(rootfs) })

	mirror := debianMirror()
	if _, err := (command{
		argv:    []string{debootstrap, "--variant=minbase", "--include=ca-certificates", debianSuite, rootfs, mirror},
		timeout: debootstrapTimeout,
	}).run(); err != nil {
		return fmt.Errorf("debootstrap %s from %s: %w", debianSuite, mirror, err)
	}
	if err := addLocalCAs(rootfs); err != nil {
		return err
	}
	// What apt downloaded is not part of an image (nor of Debian's).
	for _, pattern := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*"} {
		matches, _ := filepath.Glob(filepath.Join(rootfs, pattern))
		for _, m := range matches {
			os.RemoveAll(m)
		}
	}

	archive := filepath.Join(b.tempDir("debian-archive"), "rootfs.tar")
	if _, err := (command{argv: []string{"tar", "-C", rootfs, "-cf", archive, "."}, timeout: debootstrapTimeout}).run(); err != nil {
		return fmt.Errorf("archive the Debian root file system: %w", err)
	}
	_, err = b.engine.Docker(standInBuildTimeout, "import",
		"--change", "LABEL "+StandInLabel+"="+strconv.Quote(madeOf),
		"--change", "LABEL "+recipeLabel+"="+hash,
		"--change", `CMD ["bash"]`,
		archive, ref)
	return err
}

// addLocalCAs copies this machine's local certificate authorities into
// the root file system at rootfs and has it trust them.
func addLocalCAs(rootfs string) error {
	cas, err := localCAs()
	if err != nil || len(cas) == 0 {
		return err
	}
	for name, raw := range cas {
		path := filepath.Join(rootfs, localCAFolder, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("add this machine's certificate authorities: %w", err)
		}
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			return fmt.Errorf("add this machine's certificate authorities: %w", err)
		}
	}
	if _, err := (command{argv: []string{"chroot", rootfs, "update-ca-certificates"}, timeout: probeTimeout}).run(); err != nil {
		return fmt.Errorf("add this machine's certificate authorities: %w", err)
	}
	return nil
}

// unmountUnder unmounts whatever is mounted inside dir, deepest first.
func unmountUnder(dir string) {
	raw, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(raw), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 1 && strings.HasPrefix(fields[1], dir+"/") {
			points = append(points, fields[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}
