"""The Python test plugin: one scenario per run, named by the first
argument; host/tests/python.rs runs each against native peers. Each prints
what the test checks, one fact a line."""

import sockshim; sockshim.install()  # noqa: E702

import asyncio
import errno
import os
import select
import selectors
import socket
import sys
import time
import urllib.request

import h11


def echo(host, port):
    # create_connection's default timeout, makefile from the stdlib
    s = socket.create_connection((host, int(port)))
    print("timeout", s.gettimeout())
    f = s.makefile("rwb")
    f.write(b"hello\n")
    f.flush()
    print("line", f.readline().decode().strip())
    f.close()
    s.close()


def http(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        print("status", r.status)
        print("body", r.read().decode())


def recv_timeout(port, seconds):
    print("socket.timeout is TimeoutError", socket.timeout is TimeoutError)
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=float(seconds))
    start = time.monotonic()
    try:
        s.recv(10)
        print("no timeout")
    except TimeoutError as e:
        print("TimeoutError", e, "after", time.monotonic() - start)


def default_timeout(port, seconds):
    socket.setdefaulttimeout(float(seconds))
    print("default", socket.getdefaulttimeout())
    s = socket.create_connection(("127.0.0.1", int(port)))
    print("timeout", s.gettimeout())
    start = time.monotonic()
    try:
        s.recv(10)
    except socket.timeout:
        print("TimeoutError after", time.monotonic() - start)


def nonblocking(port):
    s = socket.create_connection(("127.0.0.1", int(port)))
    s.setblocking(False)
    print("blocking", s.getblocking(), "timeout", s.gettimeout())
    try:
        s.recv(10)
    except BlockingIOError as e:
        print("BlockingIOError", errno.errorcode[e.errno], e.errno == errno.EAGAIN)
    # a non-blocking connect: connect_ex says EINPROGRESS, writable, SO_ERROR 0
    c = socket.socket()
    c.setblocking(False)
    r = c.connect_ex(("127.0.0.1", int(port)))
    print("connect_ex", errno.errorcode.get(r, r))
    sel = selectors.DefaultSelector()
    sel.register(c, selectors.EVENT_WRITE)
    print("writable", bool(sel.select(5)))
    print("SO_ERROR", c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))


def refused(port):
    print("ECONNREFUSED", errno.ECONNREFUSED)
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    except ConnectionRefusedError as e:
        print("ConnectionRefusedError", e.errno, e.errno == errno.ECONNREFUSED)


def many(port, n):
    n = int(n)
    sel = selectors.DefaultSelector()
    print("selector", type(sel).__name__)
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", int(port)))
        s.setblocking(False)
        s.sendall(b"%d\n" % i)
        sel.register(s, selectors.EVENT_READ, i)
        socks.append(s)
    got = {}
    while len(got) < n:
        for key, ev in sel.select(10):
            data = key.fileobj.recv(100)
            got[key.data] = got.get(key.data, b"") + data
            if data.endswith(b"\n"):
                sel.unregister(key.fileobj)
    ok = all(got[i] == b"%d\n" % i for i in range(n))
    print("answered", len(got), "ok", ok)
    # select.select and select.poll over the same sockets
    import select
    for s in socks:
        s.send(b"x\n")
    time.sleep(0.2)
    r, w, _ = select.select(socks, socks, [], 5)
    print("select readable", len(r), "writable", len(w))
    p = select.poll()
    for s in socks:
        p.register(s, select.POLLIN)
    print("poll readable", len(p.poll(5000)))


def sendfile(path, host, port):
    s = socket.create_connection((host, int(port)))
    with open(path, "rb") as f:
        sent = s.sendfile(f)
        print("sent", sent, "position", f.tell())
    s.close()


def sendfile_once(path, host, port):
    s = socket.create_connection((host, int(port)))
    sent = sockshim.sendfile(s, path, 0, 1000)
    print("sent once", sent)
    s.close()


def denied(host, port):
    try:
        socket.create_connection((host, int(port)), timeout=5)
        print("connected")
    except PermissionError as e:
        print("PermissionError", e.errno == errno.EACCES, e)
    # the plugin goes on: a permitted connection still works
    echo("127.0.0.1", sys.argv[4])


def builtin(host, port):
    """CPython's own _socket, over wasi:sockets 0.2."""
    raw = sockshim.builtin_socket_module()
    if raw is None:
        print("no builtin _socket")
        return
    s = raw.socket(raw.AF_INET, raw.SOCK_STREAM)
    try:
        s.connect((host, int(port)))
        print("builtin connected")
        s.send(b"hello\n")
        print("builtin got", s.recv(100))
    except OSError as e:
        print("builtin refused", type(e).__name__, e)


def resolve(name):
    infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    print("addresses", sorted({i[4][0] for i in infos}))


def h11_get(host, port):
    s = socket.create_connection((host, int(port)), timeout=10)
    conn = h11.Connection(our_role=h11.CLIENT)
    req = h11.Request(method="GET", target="/", headers=[("Host", host), ("Connection", "close")])
    s.sendall(conn.send(req) + conn.send(h11.EndOfMessage()))
    body = b""
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            conn.receive_data(s.recv(4096))
        elif isinstance(ev, h11.Response):
            print("h11 status", ev.status_code)
        elif isinstance(ev, h11.Data):
            body += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            break
    print("h11 body", body.decode())


def udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    print("sent", s.sendto(b"ping", (host, int(port))))
    data, addr = s.recvfrom(100)
    print("udp got", data, addr == (host, int(port)))


def fail():
    raise RuntimeError("the plugin failed on purpose")


def os_sendfile(path, host, port):
    """os.sendfile from a file opened by its path: the whole file in calls
    of at most 1 MiB, then 100 bytes from the file's position (offset None)
    10 bytes before its end."""
    s = socket.create_connection((host, int(port)), timeout=30)
    with open(path, "rb") as f:
        sent = calls = 0
        while n := os.sendfile(s.fileno(), f.fileno(), sent, 1 << 20):
            sent += n
            calls += 1
        size = os.fstat(f.fileno()).st_size
        f.seek(size - 10)
        tail = os.sendfile(s.fileno(), f.fileno(), None, 100)
        print("os.sendfile sent", sent, "in", calls, "calls, then", tail, "position", f.tell())
        try:
            os.sendfile(s.fileno(), 0, 0, 10)
        except OSError as e:
            print("os.sendfile of stdin", type(e).__name__, errno.errorcode.get(e.errno))
    s.close()


def asyncio_sendfile(path, host, port):
    """loop.sock_sendfile without fallback: os.sendfile on a non-blocking
    socket, BlockingIOError and the selector's wait in between."""
    async def main():
        loop = asyncio.get_running_loop()
        s = socket.socket()
        s.setblocking(False)
        await loop.sock_connect(s, (host, int(port)))
        with open(path, "rb") as f:
            n = await loop.sock_sendfile(s, f, fallback=False)
            where = f.tell()
        s.close()
        return n, where

    n, where = asyncio.run(main())
    print("asyncio sock_sendfile sent", n, "position", where)


def wait_forever(kind):
    """A wait on nothing without a timeout blocks, as in CPython; the test
    ends the plugin with --timeout."""
    print("waiting", kind, flush=True)
    if kind == "epoll-none":
        select.epoll().poll(None)
    elif kind == "epoll-minus-1":
        select.epoll().poll(-1)
    elif kind == "poll":
        select.poll().poll()
    else:
        select.select([], [], [])
    print("returned", kind, flush=True)


def foreign_fd():
    """socket.dup, socket.fromfd and socket.socket(fileno=...) of numbers
    that are no sockshim socket, and dup of one that is."""
    def outcome(what, call):
        try:
            call()
            print(what, "no error")
        except OSError as e:
            print(what, type(e).__name__, errno.errorcode.get(e.errno), "|", e.strerror)

    s = socket.socket()
    outcome("socket(fileno=stdout)", lambda: socket.socket(fileno=1))
    outcome("socket(fileno=999)", lambda: socket.socket(fileno=999))
    outcome("fromfd(stdout)", lambda: socket.fromfd(1, socket.AF_INET, socket.SOCK_STREAM))
    outcome("dup(999)", lambda: socket.dup(999))
    outcome("sock.dup()", s.dup)
    outcome("fromfd(sock)", lambda: socket.fromfd(s.fileno(), socket.AF_INET, socket.SOCK_STREAM))
    adopted = socket.socket(fileno=s.detach())
    print("adopted own", adopted.family == socket.AF_INET)
    adopted.close()


def epoll_edge():
    """select.epoll with and without EPOLLET: a level-triggered socket is
    reported again while its byte waits, an edge-triggered one once."""
    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    for name, flags in (("level", 0), ("edge", select.EPOLLET)):
        ep = select.epoll()
        ep.register(b.fileno(), select.EPOLLIN | flags)
        a.send(b"x")
        first = len(ep.poll(5))
        again = len(ep.poll(0))
        b.recv(1)
        ep.close()
        print(name, first, again, flush=True)


def recv_big(host, port):
    """recv(1 MiB) from a peer that sent 1 MiB (the pattern i * 7 % 251):
    the host places each receive straight into the plugin, above 4 KiB."""
    s = socket.create_connection((host, int(port)), timeout=30)
    time.sleep(0.3)  # let the peer's bytes queue up
    got, sizes = bytearray(), []
    while len(got) < 1 << 20:
        data = s.recv(1 << 20)
        if not data:
            break
        sizes.append(len(data))
        got += data
    s.close()
    want = bytes(i * 7 % 251 for i in range(1 << 20))
    print("recv-big bytes", len(got), "calls", len(sizes), "largest", max(sizes))
    print("recv-big equal", bytes(got) == want)


def exit_with(code, *rest):
    print("argv", sys.argv)
    sys.exit(int(code))


SCENARIOS = {
    "echo": echo, "http": http, "recv-timeout": recv_timeout,
    "default-timeout": default_timeout, "nonblocking": nonblocking,
    "refused": refused, "many": many, "sendfile": sendfile,
    "sendfile-once": sendfile_once, "denied": denied, "builtin": builtin,
    "resolve": resolve, "h11": h11_get, "fail": fail, "exit": exit_with, "udp": udp,
    "recv-big": recv_big, "wait-forever": wait_forever, "foreign-fd": foreign_fd, "epoll-edge": epoll_edge, "os-sendfile": os_sendfile, "asyncio-sendfile": asyncio_sendfile,
}

if __name__ == "__main__":
    name = sys.argv[1]
    args = sys.argv[2:4] if name == "denied" else sys.argv[2:]
    SCENARIOS[name](*args)
    sys.stdout.flush()
