package dockerenv

import (
	"slices"
	"testing"

	"github.com/poc-go-micro/poc-go-micro/internal/testenv"
)

func TestDockerfileBaseImagesAreItsExternalFROMsWithARGDefaults(t *testing.T) {
	tests := []struct {
		name       string
		dockerfile string
		want       []string
		wantErr    bool
	}{
		{
			name: "stages and scratch are not images to pull",
			dockerfile: "ARG GO_VERSION=1.26.8\nFROM golang:${GO_VERSION}-bookworm AS build\nFROM scratch AS empty\n" +
				"FROM gcr.io/distroless/static-debian12:nonroot AS runtime\nFROM runtime AS server\nFROM build\n",
			want: []string{"golang:1.26.8-bookworm", "gcr.io/distroless/static-debian12:nonroot"},
		},
		{
			name:       "$NAME as well as ${NAME}, and --platform",
			dockerfile: "ARG BASE=debian\nARG TAG=\"bookworm\"\nFROM --platform=linux/amd64 $BASE:${TAG}\n",
			want:       []string{"debian:bookworm"},
		},
		{
			name:       "an image named twice is listed once",
			dockerfile: "FROM alpine:3.20 AS a\nFROM alpine:3.20 AS b\n",
			want:       []string{"alpine:3.20"},
		},
		{
			name:       "an ARG without a default cannot be resolved",
			dockerfile: "ARG BASE\nFROM ${BASE}\n",
			wantErr:    true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DockerfileBaseImages(tt.dockerfile)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Errorf("DockerfileBaseImages = %q, %v; want %q (error: %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestComposeImagesAreThoseOfServicesNotBuilt(t *testing.T) {
	got, err := ComposeImages([]byte(`
services:
  etcd:
    image: gcr.io/etcd-development/etcd:v3.6.16
  server:
    build: {context: ., target: server}
    image: poc-go-micro/server:latest
  azurite:
    image: mcr.microsoft.com/azure-storage/azurite:3.37.0
`))
	want := []string{"gcr.io/etcd-development/etcd:v3.6.16", "mcr.microsoft.com/azure-storage/azurite:3.37.0"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ComposeImages = %q, %v; want %q", got, err, want)
	}
}

// TestEveryImageTheProjectNeedsHasAStandIn keeps the recipes in step with
// the Dockerfile and docker-compose.yml: an image they name that could
// not be pulled must have a stand-in of the same version.
func TestEveryImageTheProjectNeedsHasAStandIn(t *testing.T) {
	root := testenv.RepoRoot(t)
	images, err := ProjectBaseImages(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(images) < 4 {
		t.Fatalf("ProjectBaseImages found only %q", images)
	}
	b := &standInBuilder{tb: t, dir: root + "/" + StandInsDir, done: map[string]standIn{}}
	for _, ref := range images {
		r, version, err := findRecipe(ref)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if r.inputs != nil {
			// The inputs check that the recipe pins the version ref names.
			if _, err := r.inputs(b, version); err != nil {
				t.Errorf("%s: %v", ref, err)
			}
		}
	}
}
