# Stand-in for gcr.io/distroless/static-debian12 (target static, as root)
# and its :nonroot tag (target nonroot), for machines that reach no image
# registry. Like distroless: no shell, no package manager, nothing but CA
# certificates, time zones, /etc/passwd and /etc/group with root, nobody
# and nonroot (65532), /tmp and the home directories, taken from the
# Debian stand-in.
ARG DEBIAN
FROM ${DEBIAN} AS files
RUN set -eu; \
    mkdir -p /out/etc/ssl/certs /out/usr/share /out/tmp /out/root /out/home/nonroot; \
    cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/; \
    cp -a /usr/share/zoneinfo /out/usr/share/; \
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >/out/etc/passwd; \
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >/out/etc/group; \
    printf '%s\n' 'hosts: files dns' >/out/etc/nsswitch.conf; \
    printf '%s\n' 'PRETTY_NAME="Distroless stand-in (poc-go-micro), from Debian GNU/Linux 12 (bookworm)"' 'ID=debian' 'VERSION_ID="12"' >/out/etc/os-release; \
    chmod 1777 /out/tmp; chmod 700 /out/root /out/home/nonroot; chown 65532:65532 /out/home/nonroot

FROM scratch AS static
COPY --from=files /out/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

FROM static AS nonroot
USER 65532
WORKDIR /home/nonroot
