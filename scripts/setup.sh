# Sourced by demo.sh and test.sh: installs what sockshim needs to build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null; then
    echo "sockshim needs Rust (cargo); install it with rustup first" >&2
    exit 1
fi
# Plugins are wasm32-wasip2 components.
if ! rustc --print target-libdir --target wasm32-wasip2 2>/dev/null | xargs -I{} test -d {}; then
    rustup target add wasm32-wasip2
fi
