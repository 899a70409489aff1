# syntax=docker/dockerfile:1
# The jobtrace image: one static binary on an empty base, run as a non-root numeric user.
#   docker build -t jobtrace/jobtrace:0.1.0 .
# The build step is hack/build-static.sh, which `make static` runs on the host as well.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    hack/build-static.sh /out

FROM scratch
COPY --from=build /out/jobtrace /jobtrace
# For scanners: the license, and the exact dependency versions compiled in.
COPY LICENSE Cargo.lock /usr/share/doc/jobtrace/
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/jobtrace"]
CMD ["run"]
