package dockerenv

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	// StandInLabel is the label of every stand-in: what it is made of.
	// An image without it did not come from here and is never replaced.
	StandInLabel = "org.poc-go-micro.stand-in"
	// recipeLabel is the label holding the hash of a stand-in's recipe,
	// which tells a stand-in to rebuild from one to reuse.
	recipeLabel = "org.poc-go-micro.stand-in.recipe"

	// pullTimeout bounds one attempt to pull an image. Where no registry
	// is reachable the attempt fails at once (the name does not resolve).
	pullTimeout = 3 * time.Minute
)

// Origin is where an image that EnsureImages made available comes from.
type Origin int

const (
	// Present: the engine had the image, and it is not a stand-in.
	Present Origin = iota
	// Pulled: EnsureImages pulled it from its registry.
	Pulled
	// StandIn: a stand-in built on this machine, now or by an earlier run.
	StandIn
)

// ImageOrigin says where one image comes from.
type ImageOrigin struct {
	// Ref is the image reference, as the Dockerfile or compose file names it.
	Ref string
	// Origin is where the image comes from.
	Origin Origin
	// MadeOf says what a stand-in is made of; empty for other images.
	MadeOf string
	// Built reports whether the stand-in was built by this run (cold)
	// rather than reused from an earlier one.
	Built bool
}

// ImageReport is where each image EnsureImages was given comes from.
type ImageReport []ImageOrigin

// StandIns returns the references of the images that are stand-ins.
func (r ImageReport) StandIns() []string {
	var refs []string
	for _, img := range r {
		if img.Origin == StandIn {
			refs = append(refs, img.Ref)
		}
	}
	return refs
}

// String says, in one line, which images are stand-ins and what each is
// made of, and which are real.
func (r ImageReport) String() string {
	var standIns, real []string
	for _, img := range r {
		switch img.Origin {
		case StandIn:
			when := "from an earlier run"
			if img.Built {
				when = "built now"
			}
			standIns = append(standIns, fmt.Sprintf("%s (%s: %s)", img.Ref, when, img.MadeOf))
		case Pulled:
			real = append(real, img.Ref+" (pulled)")
		default:
			real = append(real, img.Ref+" (present)")
		}
	}
	line := "dockerenv: base images:"
	if len(standIns) > 0 {
		line += " local stand-ins, since no registry could be pulled from: " + strings.Join(standIns, "; ") + "."
	}
	if len(real) > 0 {
		line += " Real images: " + strings.Join(real, ", ") + "."
	}
	return line
}

// EnsureImages makes each of refs available in the engine: an image the
// engine has is used as it is; a missing one is pulled; one that cannot be
// pulled is built as a stand-in (see the package documentation). It fails
// tb when an image is neither pullable nor has a stand-in recipe, or a
// stand-in fails to build.
func (e *Engine) EnsureImages(tb testing.TB, refs ...string) ImageReport {
	tb.Helper()
	b := newStandInBuilder(tb, e)
	var report ImageReport
	for _, ref := range refs {
		origin, err := e.ensureImage(b, ref)
		if err != nil {
			tb.Fatalf("dockerenv: make image %s available: %v", ref, err)
		}
		report = append(report, origin)
	}
	return report
}

// ensureImage makes ref available and says where it comes from.
func (e *Engine) ensureImage(b *standInBuilder, ref string) (ImageOrigin, error) {
	labels, present := e.imageLabels(ref)
	if present && labels[StandInLabel] == "" {
		return ImageOrigin{Ref: ref, Origin: Present}, nil
	}
	if !present {
		_, err := e.Docker(pullTimeout, "pull", "--quiet", ref)
		if err == nil {
			return ImageOrigin{Ref: ref, Origin: Pulled}, nil
		}
		b.tb.Logf("dockerenv: cannot pull %s (%s); building a stand-in", ref, lastLine(err.Error()))
	}
	s, err := b.ensure(ref)
	if err != nil {
		return ImageOrigin{}, err
	}
	return ImageOrigin{Ref: ref, Origin: StandIn, MadeOf: s.madeOf, Built: s.built}, nil
}

// imageLabels returns the labels of image ref, and whether the engine has
// that image.
func (e *Engine) imageLabels(ref string) (map[string]string, bool) {
	out, err := e.Docker(dockerTimeout, "image", "inspect", "--format",
		`{{index .Config.Labels "`+StandInLabel+`"}}|{{index .Config.Labels "`+recipeLabel+`"}}`, ref)
	if err != nil {
		return nil, false
	}
	madeOf, recipe, _ := strings.Cut(strings.TrimSpace(out), "|")
	return map[string]string{StandInLabel: madeOf, recipeLabel: recipe}, true
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
