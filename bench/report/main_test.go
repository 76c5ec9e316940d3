package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTakesEveryRoundAndDropsTheProcsSuffix(t *testing.T) {
	raw := filepath.Join(t.TempDir(), "raw.txt")
	text := `goos: linux
BenchmarkUnary/conc=1-2   	5	200130653 ns/op	5540 gomicro-calls/s	1.9 p50-ratio
some log line
BenchmarkUnary/conc=1-2   	5	200130653 ns/op	5600 gomicro-calls/s	1.5 p50-ratio
BenchmarkIdle-2   	1	1 ns/op	6.25 req/min
PASS
`
	if err := os.WriteFile(raw, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := r["BenchmarkUnary/conc=1"]["p50-ratio"]; len(got) != 2 || median(got) != 1.7 {
		t.Errorf("p50-ratio = %v, want two rounds with median 1.7", got)
	}
	if got := r["BenchmarkIdle"]["req/min"]; len(got) != 1 || got[0] != 6.25 {
		t.Errorf("req/min = %v", got)
	}
}

func TestReplaceResultsKeepsTheTextAroundTheMarkers(t *testing.T) {
	out := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	before := "# B\n\nintro\n\n" + beginMarker + "\nold\n" + endMarker + "\n\nfindings\n"
	if err := os.WriteFile(out, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceResults(out, "new table\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want := "# B\n\nintro\n\n" + beginMarker + "\nnew table\n" + endMarker + "\n\nfindings\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if err := os.WriteFile(out, []byte("no markers"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceResults(out, "x"); err == nil || !strings.Contains(err.Error(), "markers") {
		t.Errorf("without markers: %v, want an error naming them", err)
	}
}
