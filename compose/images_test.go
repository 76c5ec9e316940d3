//go:build docker

package compose

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/poc-go-micro/poc-go-micro/internal/dockerenv"
)

// maxServerImageBytes is the size the server image stays under: 40 MB.
const maxServerImageBytes = 40_000_000

// TestImagesAreWhatTheyClaim inspects the image of every binary: it runs
// as a non-root user, its entry point is its binary, --version prints the
// version stamped at build and --help works; and it reports the sizes.
func TestImagesAreWhatTheyClaim(t *testing.T) {
	services := project.BuiltServices()
	binaries := make([]string, 0, len(services))
	for binary := range services {
		binaries = append(binaries, binary)
	}
	sort.Strings(binaries)
	for _, binary := range binaries {
		image := project.Services[services[binary]].Image
		t.Run(binary, func(t *testing.T) {
			var config struct {
				User       string
				Entrypoint []string
			}
			raw := engine.MustDocker(t, "image", "inspect", "--format", "{{json .Config}}", image)
			if err := json.Unmarshal([]byte(raw), &config); err != nil {
				t.Fatalf("read the configuration of %s: %v", image, err)
			}
			if uid := uidOf(t, image, config.User); uid == 0 {
				t.Errorf("%s runs as user %q, which is root", image, config.User)
			}
			if want := "/usr/local/bin/" + binary; len(config.Entrypoint) != 1 || config.Entrypoint[0] != want {
				t.Errorf("%s's entry point is %q, want [%q]", image, config.Entrypoint, want)
			}

			out, err := engine.Docker(runTimeout, "run", "--rm", image, "--version")
			if err != nil || !strings.Contains(out, "version "+version+"\n") {
				t.Errorf("docker run %s --version: %v; want it to print version %s:\n%s", image, err, version, out)
			}
			out, err = engine.Docker(runTimeout, "run", "--rm", image, "--help")
			if err != nil || !strings.Contains(out, "GLOBAL OPTIONS") || !strings.Contains(out, "--version") {
				t.Errorf("docker run %s --help: %v; want the list of flags:\n%s", image, err, out)
			}

			size, err := strconv.ParseInt(strings.TrimSpace(engine.MustDocker(t, "image", "inspect", "--format", "{{.Size}}", image)), 10, 64)
			if err != nil {
				t.Fatalf("read the size of %s: %v", image, err)
			}
			fmt.Printf("image %s: %.1f MB, user %s\n", image, float64(size)/1e6, config.User)
			if binary == "server" && size >= maxServerImageBytes {
				t.Errorf("%s is %d bytes, want under %d", image, size, maxServerImageBytes)
			}
		})
	}
}

// uidOf returns the uid that user (an image's USER: name or uid, perhaps
// with a group) is in image, looked up in the image's /etc/passwd.
func uidOf(t *testing.T, image, user string) int {
	t.Helper()
	name, _, _ := strings.Cut(user, ":")
	if name == "" {
		return 0 // no USER: Docker runs the entry point as root
	}
	if uid, err := strconv.Atoi(name); err == nil {
		return uid
	}
	container := strings.TrimSpace(engine.MustDocker(t, "container", "create", image))
	defer engine.MustDocker(t, "container", "rm", container)
	archive := engine.MustDocker(t, "container", "cp", container+":/etc/passwd", "-")
	r := tar.NewReader(strings.NewReader(archive))
	for {
		header, err := r.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s has no /etc/passwd", image)
		}
		if err != nil {
			t.Fatalf("read /etc/passwd of %s: %v", image, err)
		}
		if header.Name != "passwd" {
			continue
		}
		passwd, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read /etc/passwd of %s: %v", image, err)
		}
		for _, line := range strings.Split(string(passwd), "\n") {
			fields := strings.Split(line, ":")
			if len(fields) > 2 && fields[0] == name {
				uid, err := strconv.Atoi(fields[2])
				if err != nil {
					t.Fatalf("/etc/passwd of %s: user %s has uid %q", image, name, fields[2])
				}
				return uid
			}
		}
		t.Fatalf("%s runs as user %q, whom its /etc/passwd does not list", image, name)
	}
}

// TestFailedImageBuildShowsTheFailingStep builds a Dockerfile whose step
// fails and checks that the error shows that step's output: what a user
// needs when the project's build breaks.
func TestFailedImageBuildShowsTheFailingStep(t *testing.T) {
	dir := t.TempDir()
	// The step's output, which its command line does not contain.
	const marker = "step output: fails-on-purpose"
	dockerfile := "FROM golang:" + goVersion(t) + "-bookworm\nRUN printf 'step output: %s\\n' fails-on-purpose && exit 3\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := engine.Docker(buildTimeout, "build", "--progress=plain", dir)
	if err == nil {
		t.Fatalf("a build whose step exits 3 succeeded")
	}
	for _, want := range []string{marker, "exit code: 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the failed build's error lacks %q:\n%v", want, err)
		}
	}
}

// goVersion returns the Dockerfile's ARG GO_VERSION default.
func goVersion(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "ARG GO_VERSION="); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("the Dockerfile has no ARG GO_VERSION=")
	return ""
}

// TestEnsureImagesNeverReplacesAnImageThatIsNotAStandIn gives EnsureImages
// an image it has a stand-in recipe for, but that the engine has from
// elsewhere (as a pulled image would be): it must be used as it is.
func TestEnsureImagesNeverReplacesAnImageThatIsNotAStandIn(t *testing.T) {
	const ref = "golang:0.0.1-bookworm" // matches the golang recipe; no such Go exists
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "marker"), []byte("not a stand-in\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "image.tar")
	if out, err := exec.Command("tar", "-C", dir, "-cf", archive, "marker").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	engine.MustDocker(t, "import", archive, ref)
	t.Cleanup(func() { engine.MustDocker(t, "image", "rm", ref) })
	before := engine.MustDocker(t, "image", "inspect", "--format", "{{.Id}}", ref)

	report := engine.EnsureImages(t, ref)
	if len(report) != 1 || report[0].Origin != dockerenv.Present {
		t.Errorf("EnsureImages(%s) = %+v, want it used as present", ref, report)
	}
	if after := engine.MustDocker(t, "image", "inspect", "--format", "{{.Id}}", ref); after != before {
		t.Errorf("EnsureImages replaced %s: image %s became %s", ref, strings.TrimSpace(before), strings.TrimSpace(after))
	}
}
