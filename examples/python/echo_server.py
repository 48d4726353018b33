"""echo_server.py ADDR: a socketserver echo server on ADDR (HOST:PORT);
prints `listening on ADDR` once it listens, then echoes each connection's
lines back until the client closes. Connections are served one at a time
(WASI has no threads).
Run: sockshim run --allow-bind 127.0.0.1:7000 echo_server.wasm 127.0.0.1:7000"""

import sockshim; sockshim.install()  # noqa: E702

import socketserver
import sys


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
            self.wfile.flush()


if __name__ == "__main__":
    host, _, port = sys.argv[1].rpartition(":")
    socketserver.TCPServer.allow_reuse_address = True
    with socketserver.TCPServer((host, int(port)), Echo) as server:
        h, p = server.server_address[:2]
        print("listening on %s:%d" % (h, p), flush=True)
        server.serve_forever()
