"""static_server.py ADDR: http.server serving the preopened directory `/`
on ADDR (HOST:PORT); file bodies go out by socket.sendfile, which sockshim
carries on the host's sendfile(2). Prints `listening on ADDR`.
Run: sockshim run --allow-bind 127.0.0.1:8000 --dir ./site::/ static_server.wasm 127.0.0.1:8000"""

import sockshim; sockshim.install()  # noqa: E702

import http.server
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile):
        # the headers are buffered in wfile: out with them, then the body
        # from the file straight to the socket
        outputfile.flush()
        self.connection.sendfile(source)

    def log_message(self, format, *args):
        sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))


if __name__ == "__main__":
    host, _, port = sys.argv[1].rpartition(":")
    http.server.HTTPServer.allow_reuse_address = True
    server = http.server.HTTPServer((host, int(port)), lambda *a: Handler(*a, directory="/"))
    h, p = server.server_address[:2]
    print("listening on %s:%d" % (h, p), flush=True)
    server.serve_forever()
