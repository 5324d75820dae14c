# fxa-gateway container image (sidecar or edge proxy).
# Build: docker build --build-arg FXA_GATEWAY_COMMIT=$(git rev-parse HEAD) \
#          --build-arg FXA_GATEWAY_SOURCE=$(git remote get-url origin) -t fxa-gateway .
# (/__version__ leaves "source" out when FXA_GATEWAY_SOURCE is not given.)
# Run:   docker run -p 8080:8080 -p 8081:8081 -v $PWD/gateway.toml:/app/gateway.toml fxa-gateway
# (Inside a container the listeners must bind 0.0.0.0 to be reachable from outside: set
#  allow_plain_non_loopback = true for a plain listener, or use TLS.)
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

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app app
WORKDIR /app
COPY --from=build /src/target/release/fxa-gateway /usr/local/bin/fxa-gateway
COPY gateway.toml ./gateway.toml
USER app
EXPOSE 8080 8081
STOPSIGNAL SIGTERM
ENTRYPOINT ["fxa-gateway"]
CMD ["--config", "/app/gateway.toml"]
