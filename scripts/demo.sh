#!/usr/bin/env bash
# The main job, end to end: a sandboxed echo-server plugin serving a native
# client, and an http-get plugin fetching a page from a native server when
# the policy allows it and failing with access-denied when it does not.
source "$(dirname "$0")/setup.sh"

echo "== building the sockshim CLI and the example plugins"
cargo build -p sockshim-host --bin sockshim
cargo build --release --target wasm32-wasip2 -p echo-server -p http-get
sockshim=target/debug/sockshim
plugins=target/wasm32-wasip2/release

work=$(mktemp -d)
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    rm -rf "$work"
}
pids=()
trap cleanup EXIT

echo
echo "== echo-server.wasm, allowed to bind 127.0.0.1 only"
"$sockshim" run --allow-bind '127.0.0.1:*' "$plugins/echo-server.wasm" 127.0.0.1:0 >"$work/echo.out" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/echo.out" && break; sleep 0.1; done
cat "$work/echo.out"
addr=$(sed -n 's/^listening on //p' "$work/echo.out")
port=${addr##*:}
exec 3<>"/dev/tcp/127.0.0.1/$port"
echo "hello, sandbox" >&3
read -r -u 3 reply
exec 3>&-
echo "native client sent 'hello, sandbox', the plugin echoed '$reply'"

echo
echo "== http-get.wasm against a native HTTP server"
mkdir -p "$work/site"
echo "a page served by a native server" >"$work/site/index.txt"
python3 -m http.server 0 --bind 127.0.0.1 --directory "$work/site" >"$work/http.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "port" "$work/http.out" && break; sleep 0.1; done
http_port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$work/http.out" | head -n1)
echo "\$ sockshim run --allow-connect 127.0.0.1:$http_port http-get.wasm http://127.0.0.1:$http_port/index.txt"
"$sockshim" run --allow-connect "127.0.0.1:$http_port" "$plugins/http-get.wasm" "http://127.0.0.1:$http_port/index.txt"
echo "\$ sockshim run http-get.wasm http://127.0.0.1:$http_port/index.txt    (no --allow-connect)"
if "$sockshim" run "$plugins/http-get.wasm" "http://127.0.0.1:$http_port/index.txt"; then
    echo "unexpected: the plugin reached the server without permission" >&2
    exit 1
else
    echo "(exit code $?: denied by the default policy, as it should be)"
fi
