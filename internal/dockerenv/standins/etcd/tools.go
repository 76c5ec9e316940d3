//go:build tools

// Package etcd pins the etcd release that the local stand-in for
// gcr.io/etcd-development/etcd is built from (see internal/dockerenv):
// its etcd, etcdctl and etcdutl commands, at the version docker-compose.yml
// names, from the Go module proxy. It is a module of its own so that
// etcd's dependencies (a newer grpc among them) stay out of the project's
// go.mod.
package etcd

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
