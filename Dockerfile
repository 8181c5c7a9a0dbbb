# Build stage: Debian 12 with the -dev packages.
FROM debian:12 AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      gcc make pkg-config libc6-dev git ca-certificates \
      libmicrohttpd-dev libcurl4-openssl-dev libcjson-dev libconfig-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make BUILD=build build/orproxy

# Runtime stage: only the shared libraries the binary links.
FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libmicrohttpd12 libcurl4 libcjson1 libconfig9 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/orproxy --shell /usr/sbin/nologin orproxy \
    && mkdir -p /var/lib/orproxy /etc/orproxy && chown orproxy /var/lib/orproxy
COPY --from=build /src/build/orproxy /usr/local/bin/orproxy
COPY conf/orproxy.conf /etc/orproxy/orproxy.conf
USER orproxy
EXPOSE 8080
VOLUME /var/lib/orproxy
ENTRYPOINT ["/usr/local/bin/orproxy"]
CMD ["-c", "/etc/orproxy/orproxy.conf"]
