# Stand-in for the official golang:<version>-bookworm image, for machines
# that reach no image registry: the Debian stand-in (which has CA
# certificates, for the Go module proxy) with the Go toolchain of that
# exact version at /usr/local/go, and the official image's environment and
# working directory. No gcc or git: the project builds with CGO_ENABLED=0
# from the module proxy.
#
# The build context is the toolchain as the Go module proxy serves it
# (module golang.org/toolchain, from `go mod download`), whose files carry
# no execute bits: the first stage restores those of the commands, as the
# go command does when it switches toolchains itself.
ARG DEBIAN
FROM ${DEBIAN} AS toolchain
COPY . /usr/local/go/
RUN chmod -R u+w /usr/local/go && chmod 0755 /usr/local/go/bin/* /usr/local/go/pkg/tool/*/*

FROM ${DEBIAN}
ARG GO_VERSION
ENV GOLANG_VERSION=${GO_VERSION} \
    GOTOOLCHAIN=local \
    GOPATH=/go \
    PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=toolchain /usr/local/go /usr/local/go
RUN mkdir -p /go/src /go/bin && chmod -R 1777 /go && go version | grep -qF "go${GO_VERSION} "
WORKDIR /go
