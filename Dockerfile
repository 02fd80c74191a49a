# syntax=docker/dockerfile:1
#
# agent-gate: multi-stage build.
#   build   official Rust image; compiles the `agent-gate` binary (SQLite is bundled, so only a C compiler is needed)
#   runtime distroless Debian (glibc + libgcc, no shell), non-root user
#
#   docker build -t agent-gate .
#   docker compose up -d

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src

# The workspace: manifests first so dependency builds are cached between source edits.
COPY Cargo.toml Cargo.lock ./
# Build settings (the allocator's compile-time memory default, see gateway/src/allocator.rs).
COPY .cargo .cargo
COPY agent-gate-manifest agent-gate-manifest
COPY agent-gate-protocol agent-gate-protocol
COPY agent-gate-macros agent-gate-macros
COPY agent-gate agent-gate
COPY agent-gate-sim agent-gate-sim
COPY gateway gateway
COPY tests/Cargo.toml tests/Cargo.toml
COPY tests/src tests/src
COPY tools.toml tools.toml

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p agent-gate-gateway --bin agent-gate \
    && install -D -m 0755 target/release/agent-gate /out/agent-gate

# The data directory must belong to the runtime user (distroless `nonroot`, uid 65532).
RUN install -d -m 0700 -o 65532 -g 65532 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
WORKDIR /app

COPY --from=build /out/agent-gate /usr/local/bin/agent-gate
COPY --from=build --chown=65532:65532 /out/data /app/data
COPY tools.toml /app/tools.toml

USER 65532:65532
VOLUME /app/data
# 8443: agents (WebSocket over TLS). 8080: health, web approvals.
EXPOSE 8443 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/agent-gate", "healthcheck", "--config", "/app/config.yaml"]

ENTRYPOINT ["/usr/local/bin/agent-gate"]
CMD ["serve", "--config", "/app/config.yaml", "--permissions", "/app/permissions.yaml"]
