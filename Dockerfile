# fxa-gateway container image (sidecar or edge proxy).
#
# Build: docker build --build-arg FXA_GATEWAY_COMMIT=$(git rev-parse HEAD) \
#          --build-arg FXA_GATEWAY_SOURCE=$(git remote get-url origin) -t fxa-gateway .
# (/__version__ leaves "source" out when FXA_GATEWAY_SOURCE is not given.)
#
# The image holds the binary only: no configuration, no certificate, no secret. Mount them:
#
#   /etc/fxa-gateway/config/gateway.toml   the configuration (a ConfigMap, or a bind mount)
#   /etc/fxa-gateway/secrets/              secret files the config names (a Secret)
#   /etc/fxa-gateway/tls/                  listener certificates and keys (a TLS Secret)
#
# Name files relative to the config (`{ file = "../secrets/client_secret" }`), mount
# directories (never a Kubernetes `subPath`: a subPath mount is never updated), and the gateway
# picks up changed files by itself (see README "Reload and certificate rotation"). Secrets
# given as environment variables cannot change in a running process: prefer files.
#
# Run:   docker run -p 8080:8080 -p 8081:8081 \
#          -v $PWD/examples/compose/config:/etc/fxa-gateway/config:ro \
#          -v $PWD/examples/compose/secrets:/etc/fxa-gateway/secrets:ro fxa-gateway
# (Inside a container the listeners must bind 0.0.0.0 to be reachable from outside: set
#  allow_plain_non_loopback = true for a plain listener, or use TLS; the admin listener must
#  too for the HEALTHCHECK below and for kubelet probes.)
#
# Probes: readiness GET /__lbheartbeat__ on the admin listener (503 once draining after
# SIGTERM), liveness the same path with a longer period; /__heartbeat__ also asks every upstream
# and is for dashboards, not for liveness (an FxA outage must not restart every pod).
FROM rust:1.95-bookworm AS build
WORKDIR /src
ARG FXA_GATEWAY_COMMIT=unknown
ENV FXA_GATEWAY_COMMIT=${FXA_GATEWAY_COMMIT}
ARG FXA_GATEWAY_SOURCE=
ENV FXA_GATEWAY_SOURCE=${FXA_GATEWAY_SOURCE}
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY vendor ./vendor
COPY benches ./benches
RUN cargo build --release --locked --bin fxa-gateway

# Distroless: glibc, CA certificates and tzdata, no shell or package manager (about 25 MB
# against about 80 MB for debian:bookworm-slim). The build stage is bookworm too, so the glibc
# the binary was linked against is the one it runs on.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/fxa-gateway /usr/local/bin/fxa-gateway
# Numeric, so Kubernetes' runAsNonRoot can verify it: distroless' `nonroot` user.
USER 65532:65532
EXPOSE 8080 8081
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/fxa-gateway", "healthcheck", "http://127.0.0.1:8081/__lbheartbeat__"]
ENTRYPOINT ["/usr/local/bin/fxa-gateway"]
CMD ["--config", "/etc/fxa-gateway/config/gateway.toml"]
