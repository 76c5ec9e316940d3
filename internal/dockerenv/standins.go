package dockerenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

// StandInsDir is the folder of the stand-ins' recipes, relative to the
// repository root.
const StandInsDir = "internal/dockerenv/standins"

// standInBuildTimeout bounds the docker build of one stand-in.
const standInBuildTimeout = 15 * time.Minute

// The private images the stand-ins are built on. Their names are ours, so
// that no image a user pulls or builds from the real ones is affected.
const (
	debianBase = "poc-go-micro-standin/debian:bookworm"
	staticBase = "poc-go-micro-standin/static:debian12"
)

// recipe is how one stand-in is made.
type recipe struct {
	// name names the recipe's Dockerfile, standins/<name>.Dockerfile.
	name string
	// refs matches the references it stands in for; its first group, if
	// any, is the version the tag names.
	refs *regexp.Regexp
	// target is the Dockerfile stage to build; "" builds the last one.
	target string
	// base is the image the Dockerfile builds FROM, passed as build
	// argument baseArg; "" for none.
	base, baseArg string
	// madeOf says what the stand-in of version is made of, for people.
	madeOf func(version string) string
	// inputs returns what else the stand-in of version is made of (pinned
	// versions, lock files), so that a change rebuilds it.
	inputs func(b *standInBuilder, version string) ([]byte, error)
	// context prepares the build context of version and returns its
	// folder and the build arguments; nil builds in the recipes' folder.
	context func(b *standInBuilder, version string) (string, map[string]string, error)
	// build, if set, replaces the docker build of the Dockerfile.
	build func(b *standInBuilder, ref, version, madeOf, hash string) error
}

// recipes are every stand-in this package can build, bases first.
var recipes = []*recipe{
	{
		name:   "debian",
		refs:   regexp.MustCompile(`^` + regexp.QuoteMeta(debianBase) + `$`),
		madeOf: func(string) string { return "Debian bookworm (minbase) by debootstrap from " + debianMirror() },
		inputs: debianInputs,
		build:  buildDebian,
	},
	staticRecipe(staticBase, "static", "CA certificates, time zones and users root, nobody, nonroot of the Debian stand-in, FROM scratch"),
	staticRecipe("gcr.io/distroless/static-debian12:nonroot", "nonroot", "CA certificates, time zones and users of the Debian stand-in, FROM scratch, user 65532"),
	{
		name:    "golang",
		refs:    regexp.MustCompile(`^(?:docker\.io/library/)?golang:(\d+\.\d+(?:\.\d+)?)-bookworm$`),
		base:    debianBase,
		baseArg: "DEBIAN",
		madeOf: func(version string) string {
			return "the Debian stand-in with Go " + version + " from the Go module proxy"
		},
		inputs:  func(_ *standInBuilder, version string) ([]byte, error) { return []byte(version), nil },
		context: goToolchainContext,
	},
	{
		name:    "etcd",
		refs:    regexp.MustCompile(`^gcr\.io/etcd-development/etcd:v(\d+\.\d+\.\d+)$`),
		base:    staticBase,
		baseArg: "STATIC",
		madeOf: func(version string) string {
			return "etcd, etcdctl and etcdutl " + version + " built from the Go module proxy, on the static stand-in"
		},
		inputs:  etcdInputs,
		context: etcdContext,
	},
	{
		name:    "azurite",
		refs:    regexp.MustCompile(`^mcr\.microsoft\.com/azure-storage/azurite:(\d+\.\d+\.\d+)$`),
		base:    debianBase,
		baseArg: "DEBIAN",
		madeOf: func(version string) string {
			return "the Debian stand-in with Node.js 22 and azurite " + version + " from the npm registry"
		},
		inputs:  azuriteInputs,
		context: azuriteContext,
	},
}

// staticRecipe returns the recipe of stage target of static.Dockerfile,
// standing in for ref.
func staticRecipe(ref, target, madeOf string) *recipe {
	return &recipe{
		name:    "static",
		refs:    regexp.MustCompile(`^` + regexp.QuoteMeta(ref) + `$`),
		target:  target,
		base:    debianBase,
		baseArg: "DEBIAN",
		madeOf:  func(string) string { return madeOf },
	}
}

// findRecipe returns the recipe of the stand-in for ref, and the version
// ref's tag names.
func findRecipe(ref string) (*recipe, string, error) {
	for _, r := range recipes {
		if m := r.refs.FindStringSubmatch(ref); m != nil {
			version := ""
			if len(m) > 1 {
				version = m[1]
			}
			return r, version, nil
		}
	}
	return nil, "", fmt.Errorf("there is no stand-in recipe for it in %s", StandInsDir)
}

// standInBuilder builds the stand-ins of one EnsureImages call, each once.
type standInBuilder struct {
	tb     testing.TB
	engine *Engine
	dir    string // the recipes: StandInsDir of the repository
	done   map[string]standIn
}

// standIn is a stand-in that is in the engine.
type standIn struct {
	id     string // its image id
	madeOf string
	built  bool // by this run
}

func newStandInBuilder(tb testing.TB, e *Engine) *standInBuilder {
	return &standInBuilder{tb: tb, engine: e, dir: filepath.Join(testenv.RepoRoot(tb), StandInsDir), done: make(map[string]standIn)}
}

// ensure makes the stand-in ref available, building it (and its base)
// unless the engine has it from the same recipe already.
func (b *standInBuilder) ensure(ref string) (standIn, error) {
	if s, ok := b.done[ref]; ok {
		return s, nil
	}
	r, version, err := findRecipe(ref)
	if err != nil {
		return standIn{}, err
	}
	var baseID string
	if r.base != "" {
		base, err := b.ensure(r.base)
		if err != nil {
			return standIn{}, fmt.Errorf("its base %s: %w", r.base, err)
		}
		baseID = base.id
	}
	hash, err := b.recipeHash(r, version, baseID)
	if err != nil {
		return standIn{}, err
	}
	s := standIn{madeOf: r.madeOf(version)}
	if labels, ok := b.engine.imageLabels(ref); ok && labels[recipeLabel] == hash {
		s.id, err = b.imageID(ref)
		b.done[ref] = s
		return s, err
	} else if ok && labels[StandInLabel] == "" {
		return standIn{}, fmt.Errorf("the engine has an image %s that is not a stand-in; it is used as it is, never replaced", ref)
	}

	start := time.Now()
	b.tb.Logf("dockerenv: building the stand-in %s: %s", ref, s.madeOf)
	if r.build != nil {
		err = r.build(b, ref, version, s.madeOf, hash)
	} else {
		err = b.dockerBuild(r, ref, version, s.madeOf, hash)
	}
	if err != nil {
		return standIn{}, fmt.Errorf("build its stand-in: %w", err)
	}
	b.tb.Logf("dockerenv: built the stand-in %s in %s", ref, time.Since(start).Round(100*time.Millisecond))
	s.built = true
	if s.id, err = b.imageID(ref); err != nil {
		return standIn{}, err
	}
	b.done[ref] = s
	return s, nil
}

// recipeHash identifies what the stand-in of r at version would be built
// from: its Dockerfile, target, version, inputs and base image.
func (b *standInBuilder) recipeHash(r *recipe, version, baseID string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "recipe %s\ntarget %s\nversion %s\nbase %s\n", r.name, r.target, version, baseID)
	if r.build == nil {
		dockerfile, err := os.ReadFile(b.dockerfile(r))
		if err != nil {
			return "", fmt.Errorf("read its recipe: %w", err)
		}
		h.Write(dockerfile)
	}
	if r.inputs != nil {
		inputs, err := r.inputs(b, version)
		if err != nil {
			return "", err
		}
		h.Write(inputs)
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// dockerfile returns the path of r's Dockerfile.
func (b *standInBuilder) dockerfile(r *recipe) string {
	return filepath.Join(b.dir, r.name+".Dockerfile")
}

// dockerBuild builds r's Dockerfile as ref, labelled as a stand-in.
func (b *standInBuilder) dockerBuild(r *recipe, ref, version, madeOf, hash string) error {
	contextDir := b.dir
	var buildArgs map[string]string
	if r.context != nil {
		var err error
		contextDir, buildArgs, err = r.context(b, version)
		if err != nil {
			return err
		}
	}
	args := []string{"build", "--progress=plain", "--file", b.dockerfile(r), "--tag", ref,
		"--label", StandInLabel + "=" + madeOf, "--label", recipeLabel + "=" + hash}
	if r.target != "" {
		args = append(args, "--target", r.target)
	}
	if r.base != "" {
		args = append(args, "--build-arg", r.baseArg+"="+r.base)
	}
	for k, v := range buildArgs {
		args = append(args, "--build-arg", k+"="+v)
	}
	_, err := b.engine.Docker(standInBuildTimeout, append(args, contextDir)...)
	return err
}

// imageID returns the id of image ref.
func (b *standInBuilder) imageID(ref string) (string, error) {
	out, err := b.engine.Docker(dockerTimeout, "image", "inspect", "--format", "{{.Id}}", ref)
	if err != nil {
		return "", err
	}
	return firstLine(out), nil
}

// tempDir returns a new folder for a build context, removed with tb.
func (b *standInBuilder) tempDir(name string) string {
	dir, err := os.MkdirTemp("", "poc-go-micro-standin-"+name+"-")
	if err != nil {
		b.tb.Fatalf("dockerenv: create a folder for the %s stand-in: %v", name, err)
	}
	b.tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
