# syntax=docker/dockerfile:1
# NSPS -> WTL HLR/HSS connector: a small, non-root runtime image.
#
#   docker build -t nsps-wtl-connector .
#   docker run --rm -p 8000:8000 --env-file .env nsps-wtl-connector

# ---- build ---------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src

# cargo-auditable embeds the dependency tree (crate names, versions, sources) in the binary, so
# scanners read it from the image: `cargo audit bin`, trivy, grype, syft. Its own layer, before
# the manifests: it is compiled once, not on every Cargo.lock change.
RUN cargo install --locked cargo-auditable

# Dependencies first, in their own layer: this only rebuilds when Cargo.toml/Cargo.lock change.
# Built the same way as the connector below, so that build reuses them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo auditable build --release --locked \
 && rm -rf src

# The connector itself. `touch` makes cargo rebuild it rather than reuse the stub's artefacts.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo auditable build --release --locked \
 && cp target/release/nsps-wtl-connector /nsps-wtl-connector

# ---- runtime -------------------------------------------------------------------------------
# distroless/cc: glibc, CA certificates (for TLS to WTL and the token endpoint), no shell,
# and a non-root user.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="nsps-wtl-connector" \
      org.opencontainers.image.description="Connects PortaOne NSPS provisioning events to a WTL HLR/HSS"
COPY --from=build /nsps-wtl-connector /usr/local/bin/nsps-wtl-connector
# 65532 is the image's `nonroot` user.
USER 65532:65532
ENV PORT=8000
EXPOSE 8000
# The binary checks its own /health: no curl or shell needed in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/nsps-wtl-connector", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/nsps-wtl-connector"]
CMD ["serve"]
