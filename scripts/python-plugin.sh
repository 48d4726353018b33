#!/usr/bin/env bash
# Builds a Python plugin: scripts/python-plugin.sh APP.py OUT.wasm
#
# APP.py is an ordinary script whose first line is
# `import sockshim; sockshim.install()`; the result is a WASI command
# component that `sockshim run OUT.wasm ARGS` runs with sys.argv = [APP.py,
# ARGS...]. componentize-py 0.25.1 is installed into .venv-python-plugins/
# at the repository's root when it is missing.
#
# Extra directories of pure-Python packages to bundle (e.g. a
# `pip install --target DIR h11`) go in SOCKSHIM_PYTHON_PATH, separated by
# colons. See guest/python/README.md.
set -euo pipefail

# `--install` only installs componentize-py; exit status 3 means it could
# not be installed (the tests skip then).
if [ $# -ne 2 ] && [ "${1:-}" != "--install" ]; then
    echo "usage: $0 APP.py OUT.wasm" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${SOCKSHIM_PYTHON_VENV:-$root/.venv-python-plugins}
version=0.25.1

if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -q " $version"; then
    echo "python-plugin: installing componentize-py $version into $venv" >&2
    # Debian's python3 makes virtual environments only with python3-venv.
    if ! python3 -c 'import ensurepip' 2>/dev/null && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null; then
        echo "python-plugin: installing python3-venv" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; } >&2 || true
    fi
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "componentize-py==$version"; }; then
        echo "python-plugin: cannot install componentize-py $version" >&2
        exit 3
    fi
fi
[ "$1" = "--install" ] && exit 0
app=$1
out=$2

[ -f "$app" ] || { echo "python-plugin: no such file: $app" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$app" "$work/sockshim_app_source.py"
cp "$root/guest/python/run_app.py" "$work/sockshim_plugin_main.py"
printf '%s\n' "$(basename "$app")" > "$work/sockshim_app_name.txt"

paths=(-p "$work" -p "$root/guest/python" -p "$(cd "$(dirname "$app")" && pwd)")
if [ -n "${SOCKSHIM_PYTHON_PATH:-}" ]; then
    IFS=: read -r -a extra <<< "$SOCKSHIM_PYTHON_PATH"
    for dir in "${extra[@]}"; do paths+=(-p "$dir"); done
fi

mkdir -p "$(dirname "$out")"
# No VIRTUAL_ENV: componentize-py would bundle the build venv's packages.
env -u VIRTUAL_ENV "$venv/bin/componentize-py" \
    -d "$root/wit" -w python-plugin \
    --import-interface-name sockshim:socket/socket@0.1.0=sockshim_socket \
    componentize "${paths[@]}" -o "$out" sockshim_plugin_main
