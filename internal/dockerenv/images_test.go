package dockerenv

import (
	"strings"
	"testing"
)

func TestImageReportSaysOnceWhichImagesAreStandIns(t *testing.T) {
	report := ImageReport{
		{Ref: "golang:1.26.8-bookworm", Origin: StandIn, MadeOf: "Debian with Go", Built: true},
		{Ref: "gcr.io/etcd-development/etcd:v3.6.16", Origin: StandIn, MadeOf: "etcd from source"},
		{Ref: "mcr.microsoft.com/azure-storage/azurite:3.37.0", Origin: Pulled},
		{Ref: "gcr.io/distroless/static-debian12:nonroot", Origin: Present},
	}
	line := report.String()
	for _, want := range []string{
		"golang:1.26.8-bookworm (built now: Debian with Go)",
		"gcr.io/etcd-development/etcd:v3.6.16 (from an earlier run: etcd from source)",
		"Real images: mcr.microsoft.com/azure-storage/azurite:3.37.0 (pulled), gcr.io/distroless/static-debian12:nonroot (present)",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("report %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "\n") {
		t.Errorf("report %q is more than one line", line)
	}
	if got := report.StandIns(); len(got) != 2 || got[0] != "golang:1.26.8-bookworm" {
		t.Errorf("StandIns = %q", got)
	}
	if line := (ImageReport{{Ref: "x:1", Origin: Present}}).String(); strings.Contains(line, "stand-in") {
		t.Errorf("a report without stand-ins mentions them: %q", line)
	}
}

func TestFindRecipeTellsTheVersionAndRefusesUnknownImages(t *testing.T) {
	tests := []struct {
		ref, recipe, version string
	}{
		{"golang:1.26.8-bookworm", "golang", "1.26.8"},
		{"docker.io/library/golang:1.27.1-bookworm", "golang", "1.27.1"},
		{"gcr.io/distroless/static-debian12:nonroot", "static", ""},
		{"gcr.io/etcd-development/etcd:v3.6.16", "etcd", "3.6.16"},
		{"mcr.microsoft.com/azure-storage/azurite:3.37.0", "azurite", "3.37.0"},
		{debianBase, "debian", ""},
		{"golang:1.26.8-alpine", "", ""},
		{"gcr.io/distroless/static-debian12:latest", "", ""},
		{"postgres:16", "", ""},
	}
	for _, tt := range tests {
		r, version, err := findRecipe(tt.ref)
		switch {
		case tt.recipe == "" && err == nil:
			t.Errorf("findRecipe(%q) = %s; want no recipe", tt.ref, r.name)
		case tt.recipe != "" && (err != nil || r.name != tt.recipe || version != tt.version):
			t.Errorf("findRecipe(%q) = %v, %q, %v; want recipe %s, version %q", tt.ref, r, version, err, tt.recipe, tt.version)
		}
	}
}

func TestMirrorInReadsBothAptFormats(t *testing.T) {
	tests := []struct {
		name, sources, want string
	}{
		{
			name: "deb822, security stanza first",
			sources: "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n\n" +
				"Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n",
			want: "http://mirror.example/debian",
		},
		{
			name:    "one-line entries with options",
			sources: "# comment\ndeb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian bookworm main\n",
			want:    "http://mirror.example/debian",
		},
		{
			name:    "no entry for the suite",
			sources: "deb http://deb.debian.org/debian bullseye main\n",
			want:    "",
		},
		{
			name:    "only a CD-ROM or file source",
			sources: "deb file:/mnt/debian bookworm main\n",
			want:    "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mirrorIn(tt.sources); got != tt.want {
				t.Errorf("mirrorIn = %q, want %q", got, tt.want)
			}
		})
	}
}
