//go:build tools

// Package benchstat pins benchstat, which `make bench` uses to summarise
// repeated benchmark runs. It lives in a module of its own because every
// golang.org/x/perf version requires github.com/golang/protobuf >= 1.5,
// which in the parent tools module would replace the pinned protoc-gen-go
// v1.4.2 and change the generated proto code.
package benchstat

import (
	_ "golang.org/x/perf/cmd/benchstat"
)
