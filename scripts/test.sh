#!/usr/bin/env bash
# Runs every test: unit tests, guests against native peers, guests against
# guests, and the CLI as a user runs it. Installs the wasm32-wasip2 target
# if needed; the guests are built by the tests' build script.
source "$(dirname "$0")/setup.sh"
cargo test --workspace "$@"
