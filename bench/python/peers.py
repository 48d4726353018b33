"""Native peers for net_bench.py: a sink (reads and discards) and a byte
echo, each one connection at a time on its own thread.
    python3 bench/python/peers.py SINK_PORT ECHO_PORT"""
import socket
import sys
import threading


def serve(port, handle):
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", port))
    lst.listen(16)
    while True:
        c, _ = lst.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def sink(c):
    while c.recv(1 << 20):
        pass


def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while d := c.recv(64):
        c.sendall(d)


threading.Thread(target=serve, args=(int(sys.argv[1]), sink), daemon=True).start()
serve(int(sys.argv[2]), echo)
