"""http_get.py URL: fetches URL with urllib.request and writes the body to
stdout. Build: scripts/python-plugin.sh examples/python/http_get.py http_get.wasm
Run:   sockshim run --allow-connect 'example.com:80' http_get.wasm http://example.com/"""

import sockshim; sockshim.install()  # noqa: E702

import sys
import urllib.request

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: http_get.py URL")
    with urllib.request.urlopen(sys.argv[1]) as response:
        sys.stdout.buffer.write(response.read())
