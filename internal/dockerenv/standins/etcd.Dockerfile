# Stand-in for gcr.io/etcd-development/etcd:v<version>, for machines that
# reach no image registry, laid out as the official image: etcd, etcdctl
# and etcdutl in /usr/local/bin of a distroless static base (the static
# stand-in), run as root, in /var/lib/etcd. The build context holds the
# three binaries, built from that exact etcd release from the Go module
# proxy (standins/etcd/go.mod).
ARG STATIC
FROM ${STATIC}
COPY etcd etcdctl etcdutl /usr/local/bin/
WORKDIR /var/etcd/
WORKDIR /var/lib/etcd/
EXPOSE 2379 2380
CMD ["/usr/local/bin/etcd"]
