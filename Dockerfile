# syntax=docker/dockerfile:1
#
# obf-exporter container image.
#
#   docker build -t obf-exporter --build-arg OBF_EXPORTER_REVISION="$(git rev-parse --short=12 HEAD)" .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/obf-exporter:TAG --push .
#
# Build stage: Debian 12 (bookworm) Rust image; the cargo commands are scripts/build-release, which
# runs the same way outside Docker. Dependencies are compiled in their own layer (only the workspace's
# manifests, Cargo.lock and build.rs invalidate it), then the workspace's crates: the exporter and
# the OBF simulator (crates/obf-sim) that its `demo` and `sim` commands serve.
#
# Runtime stage: distroless cc-debian12 (glibc, libgcc, CA certificates, tzdata; no shell, no
# package manager), running as the numeric non-root user 65532. Not a static musl binary: reqwest's
# and the server's TLS use rustls with aws-lc-rs, whose C part (aws-lc-sys) would need a musl C
# toolchain for every target architecture; the glibc build needs only the gcc of the build image,
# and the two stages share Debian 12's glibc (2.36), so the binary runs unchanged.
#
# Each platform builds natively (no cross-compilation): with buildx on an amd64 host, linux/arm64 is
# built under QEMU emulation (slow, tens of minutes) unless an arm64 builder node is appended
# (`docker buildx create --append`).
#
# Configuration: /etc/obf-exporter/config.toml (OBF_EXPORTER_CONFIG), mounted read-only; client
# secrets as files under /run/secrets/ (Docker/Compose secrets, Kubernetes Secret volumes), named by
# each org's client_secret_file. The image ships the documented example config at
# /usr/share/doc/obf-exporter/config.example.toml.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /build

# Layer 1: the dependencies, against stub sources. Every workspace member's manifest is needed.
COPY Cargo.toml Cargo.lock build.rs ./
COPY crates/obf-sim/Cargo.toml crates/obf-sim/Cargo.toml
COPY scripts/build-release scripts/build-release
RUN scripts/build-release --deps-only

# Layer 2: the crates. .dockerignore keeps target/, .git/ and the deployment files out, so only
# changes to the sources (src/, crates/, and the tests/benches that Cargo.toml names) rebuild them.
COPY . .
# Shown as `revision` in obf_exporter_build_info ("unknown" when not given; .git is not copied).
ARG OBF_EXPORTER_REVISION=unknown
RUN scripts/build-release --out /out


FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="obf-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Open Badge Factory API credentials" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"

COPY --from=build /out/obf-exporter /usr/local/bin/obf-exporter
COPY config/obf-exporter.example.toml /usr/share/doc/obf-exporter/config.example.toml

ENV OBF_EXPORTER_CONFIG=/etc/obf-exporter/config.toml
# distroless' "nonroot" user, by number, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9852

# GET http://127.0.0.1:9852/-/healthy; no curl in the image. When the agent listens elsewhere or
# serves TLS, override it: healthcheck --url https://127.0.0.1:9852/-/healthy --insecure
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/obf-exporter", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/obf-exporter"]
# `run` reads OBF_EXPORTER_CONFIG. Other commands: `docker run IMAGE demo`, `IMAGE check`, `IMAGE probe`.
CMD ["run"]
