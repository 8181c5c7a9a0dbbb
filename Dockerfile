# orproxy container image: a build stage with the -dev packages, and a slim
# runtime stage with only the shared libraries the binary links.
#
#   docker build -t orproxy --build-arg VERSION="$(git describe --always --dirty)" .
#   docker run -d --name orproxy -p 127.0.0.1:8080:8080 -e OPENROUTER_API_KEY \
#       -v orproxy-state:/var/lib/orproxy --stop-timeout 45 orproxy
#
# SECURITY: inside the container orproxy listens on 0.0.0.0:8080, because a
# published port reaches the container's own address, not its loopback. So the
# image's config sets auth.mode = "keys": every request needs a client key, and
# the clients come from a file you mount at /etc/orproxy/clients.conf
# (`orproxy key new NAME` prints a stanza; see conf/orproxy.docker.conf):
#   -v "$PWD/clients.conf:/etc/orproxy/clients.conf:ro"
# Publishing on the host's loopback (`-p 127.0.0.1:8080:8080`) is still wise.
#
# The upstream key: either the environment (`-e OPENROUTER_API_KEY`), or a file
# at /run/secrets/openrouter-api-key (a Compose/Swarm secret, or
# `-v "$PWD/key:/run/secrets/openrouter-api-key:ro"`, readable by uid 10001).
# The file wins. State (usage.db, prices.json) is in the volume /var/lib/orproxy;
# a bind-mounted directory must be writable by uid 10001.
#
# tests/service/check_dockerfile.sh checks this file against `ldd build/orproxy`
# (no Docker engine needed).

FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gcc make pkg-config libc6-dev \
      libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libcjson-dev libconfig-dev \
      libsqlite3-dev libsystemd-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build needs, so that a build/ directory left in the checkout
# (objects built against the host's headers) cannot end up in the image.
COPY Makefile ./
COPY src/ src/
# The console's files are compiled into the binary by tools/embed.c.
COPY tools/ tools/
COPY ui/ ui/
# There is no .git here; pass the version in.
ARG VERSION=container
RUN make VERSION="$VERSION" build/orproxy

FROM debian:12-slim
# One package per library the binary names (readelf -d: NEEDED), found with
# dpkg -S; apt brings in what those libraries link in turn. libc6 (libc, libm)
# is already in the base image. ca-certificates: HTTPS to OpenRouter.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libmicrohttpd12 libcurl4 libssl3 libcjson1 libconfig9 libsqlite3-0 libsystemd0 libpq5 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 orproxy \
 && useradd --system --uid 10001 --gid orproxy --no-create-home \
      --home-dir /var/lib/orproxy --shell /usr/sbin/nologin orproxy \
 && install -d -o orproxy -g orproxy -m 0700 /var/lib/orproxy
COPY --from=build /src/build/orproxy /usr/local/bin/orproxy
COPY conf/orproxy.docker.conf /etc/orproxy/orproxy.conf
# orproxy reads $CREDENTIALS_DIRECTORY/openrouter-api-key if it exists (the
# systemd credential convention), which is where Docker mounts secrets.
ENV CREDENTIALS_DIRECTORY=/run/secrets
# Numeric, so that "run as non-root" policies can check it without /etc/passwd.
USER 10001:10001
EXPOSE 8080
VOLUME /var/lib/orproxy
# SIGTERM drains in-flight requests for shutdown_timeout_s (30 s) and flushes
# the ledger: run with --stop-timeout 45 (or `docker stop -t 45`), or Docker's
# default of 10 s cuts streams short with SIGKILL.
STOPSIGNAL SIGTERM
# The slim image has no curl or wget. Rather than install one only for this,
# bash (always present) speaks HTTP/1.0 through its /dev/tcp redirection. It asks
# /healthz (is the process serving?), not /readyz: readiness also needs a key
# and a loaded price table, and a container that lost the network for a while is
# not broken, so an orchestrator that replaces unhealthy containers should leave
# it alone. Point load-balancer readiness probes at /readyz instead. The port
# must match listen.port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && read -r _ status _ <&3 && [ \"$status\" = 200 ]"]
ENTRYPOINT ["/usr/local/bin/orproxy"]
CMD ["-c", "/etc/orproxy/orproxy.conf"]
