//go:build tools

// Package tools pins the versions of the code generators and benchmark tools
// the project installs into bin/tools. It is never built into a binary; the
// blank imports only keep the pins in go.mod when `go mod tidy` runs.
package tools

import (
	_ "github.com/golang/protobuf/protoc-gen-go"
	_ "github.com/micro/micro/v2/cmd/protoc-gen-micro"
)
