package azqueue

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateREADME = flag.Bool("update-readme", false, "rewrite the README's broker settings table from Settings()")

const (
	readmePath     = "../../README.md"
	settingsBegin  = "<!-- settings:begin -->\n"
	settingsEnd    = "<!-- settings:end -->\n"
	settingsHeader = "| option | twin | environment | default | range | meaning |\n|---|---|---|---|---|---|\n"
)

// settingsTable renders Settings() as the README's markdown table.
func settingsTable() string {
	var b strings.Builder
	b.WriteString(settingsHeader)
	for _, s := range Settings() {
		twin := ""
		if s.Twin != "" {
			twin = "`" + s.Twin + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s | %s | %s |\n", s.Option, twin, s.Env, s.Default, s.Range, s.Doc)
	}
	return b.String()
}

// TestREADMESettingsTable keeps the README's configuration table of the
// broker identical to the options, environment variables, defaults and
// ranges the code uses. Run with -update-readme to rewrite it.
func TestREADMESettingsTable(t *testing.T) {
	raw, err := os.ReadFile(filepath.FromSlash(readmePath))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	begin, end := strings.Index(readme, settingsBegin), strings.Index(readme, settingsEnd)
	if begin < 0 || end < begin {
		t.Fatalf("README.md lacks the %q ... %q markers", settingsBegin, settingsEnd)
	}
	current := readme[begin+len(settingsBegin) : end]
	want := settingsTable()
	if current == want {
		return
	}
	if *updateREADME {
		updated := readme[:begin+len(settingsBegin)] + want + readme[end:]
		if err := os.WriteFile(filepath.FromSlash(readmePath), []byte(updated), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's broker settings table differs from Settings(); run\n\tgo test ./broker/azqueue -run TestREADMESettingsTable -update-readme\nwant:\n%s\ngot:\n%s", want, current)
}

// TestSettingsAreComplete checks that every tunable has an option, an
// environment variable with the documented prefix, a default, a range and
// a description, and that no two share an environment variable.
func TestSettingsAreComplete(t *testing.T) {
	seen := make(map[string]bool)
	for _, s := range Settings() {
		if s.Option == "" || s.Default == "" || s.Range == "" || s.Doc == "" || !strings.HasPrefix(s.Env, EnvPrefix) {
			t.Errorf("incomplete setting %+v", s)
		}
		if seen[s.Env] {
			t.Errorf("environment variable %s used twice", s.Env)
		}
		seen[s.Env] = true
	}
}
