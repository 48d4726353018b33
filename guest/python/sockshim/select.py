"""A pure-Python `select` over the sockshim WIT: `select.select`,
`select.poll` (the WIT `poll`) and `select.epoll` (the WIT `selector`
resource, so `selectors.DefaultSelector` is `EpollSelector`).

Only sockshim sockets can be waited on (their `fileno()` comes from
`sockshim._socket`'s table). No host call is made for an empty set with a
zero timeout, which `selectors` does while componentize-py builds the
component, when no host import may be called.
"""

import errno as _errno
import math as _math
import time

from . import _socket as _s
from ._wit import ss as _ss, Err as _Err

error = OSError

POLLIN = 0x001
POLLPRI = 0x002
POLLOUT = 0x004
POLLERR = 0x008
POLLHUP = 0x010
POLLNVAL = 0x020
POLLRDNORM = 0x040
POLLRDBAND = 0x080
POLLWRNORM = 0x100
POLLWRBAND = 0x200
POLLMSG = 0x400
POLLRDHUP = 0x2000

EPOLLIN = POLLIN
EPOLLPRI = POLLPRI
EPOLLOUT = POLLOUT
EPOLLERR = POLLERR
EPOLLHUP = POLLHUP
EPOLLRDNORM = POLLRDNORM
EPOLLRDBAND = POLLRDBAND
EPOLLWRNORM = POLLWRNORM
EPOLLWRBAND = POLLWRBAND
EPOLLMSG = POLLMSG
EPOLLRDHUP = POLLRDHUP
EPOLLET = 1 << 31
EPOLLONESHOT = 1 << 30
EPOLLEXCLUSIVE = 1 << 28
EPOLL_CLOEXEC = 0o2000000

_E = _ss.Events
_PAIRS = (
    (POLLIN | POLLRDNORM, _E.READABLE),
    (POLLPRI, _E.PRIORITY),
    (POLLOUT | POLLWRNORM, _E.WRITABLE),
    (POLLERR, _E.ERROR),
    (POLLHUP, _E.HANG_UP),
    (POLLRDHUP, _E.READ_HANG_UP),
    (EPOLLET, _E.EDGE_TRIGGERED),
)


def _to_events(mask):
    ev = _E(0)
    for bits, e in _PAIRS:
        if mask & bits:
            ev |= e
    return ev


def _from_events(ev):
    mask = 0
    for bits, e in _PAIRS:
        if ev & e:
            mask |= bits & (POLLIN | POLLPRI | POLLOUT | POLLERR | POLLHUP | POLLRDHUP)
    return mask


def _fd(obj):
    if isinstance(obj, int):
        fd = obj
    else:
        fd = int(obj.fileno())
    if fd < 0:
        raise ValueError("file descriptor cannot be a negative integer (%d)" % fd)
    return fd


def _mem_revents(b, mask):
    """Readiness of a socketpair end, computed here."""
    r = 0
    if mask & POLLIN and b.readable():
        r |= POLLIN
    if mask & POLLOUT:
        r |= POLLOUT
    return r


def _ns(seconds):
    return None if seconds is None else max(0, _math.ceil(seconds * 1e9))


def _wait_forever():
    """A wait on nothing without a timeout, which in CPython (epoll_wait(2),
    poll(2), select(2) on no descriptors) blocks until a signal; a plugin
    gets none, so it blocks until the host ends the plugin. The wait is an
    empty selector's (epoll_wait(2) on the host), which the host's stop and
    `--timeout` end as they end any other wait; it holds no CPU."""
    try:
        sel = _ss.Selector.create()
    except _Err as e:
        _s._raise(e.value)
    with sel:
        while True:
            try:
                sel.wait(None, 0)
            except _Err as e:
                _s._raise(e.value)


def _wait_poll(fds, timeout_ns):
    """fds: list of (fd, mask). Returns list of (fd, revents)."""
    entries, positions, out = [], [], []
    for fd, mask in fds:
        b = _s._table.get(fd)
        if b is None:
            out.append((fd, POLLNVAL))
        elif isinstance(b, _s._MemEnd):
            r = _mem_revents(b, mask)
            if r:
                out.append((fd, r))
        else:
            entries.append(_ss.PollEntry(b, _to_events(mask)))
            positions.append(fd)
    if out:
        timeout_ns = 0
    if not entries:
        if timeout_ns is None and not out:
            _wait_forever()
        if timeout_ns:

            time.sleep(timeout_ns / 1e9)
        return out
    try:
        ready = _ss.poll(entries, timeout_ns)
    except _Err as e:
        _s._raise(e.value)
    for r in ready:
        out.append((positions[r.index], _from_events(r.events)))
    return out


def select(rlist, wlist, xlist, timeout=None):
    if timeout is not None:
        timeout = float(timeout)
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    masks = {}
    objs = {}
    for lst, bit in ((rlist, POLLIN), (wlist, POLLOUT), (xlist, POLLPRI)):
        for o in lst:
            fd = _fd(o)
            masks[fd] = masks.get(fd, 0) | bit
            objs.setdefault((fd, bit), []).append(o)
    if not masks:
        if timeout is None:
            _wait_forever()
        if timeout:

            time.sleep(timeout)
        return [], [], []
    ready = _wait_poll(list(masks.items()), _ns(timeout))
    r, w, x = [], [], []
    for fd, rev in ready:
        if rev & POLLNVAL:
            raise OSError(_errno.EBADF, "Bad file descriptor")
        if rev & (POLLIN | POLLHUP | POLLERR | POLLRDHUP) and masks[fd] & POLLIN:
            r += objs[(fd, POLLIN)]
        if rev & (POLLOUT | POLLERR | POLLHUP) and masks[fd] & POLLOUT:
            w += objs[(fd, POLLOUT)]
        if rev & POLLPRI and masks[fd] & POLLPRI:
            x += objs[(fd, POLLPRI)]
    return r, w, x


class poll:
    """`select.poll()`: one host `poll` call per wait."""

    def __init__(self):
        self._fds = {}

    def register(self, fd, eventmask=POLLIN | POLLPRI | POLLOUT):
        self._fds[_fd(fd)] = eventmask

    def modify(self, fd, eventmask):
        fd = _fd(fd)
        if fd not in self._fds:
            raise FileNotFoundError(_errno.ENOENT, "No such file or directory")
        self._fds[fd] = eventmask

    def unregister(self, fd):
        del self._fds[_fd(fd)]

    def poll(self, timeout=None):
        if timeout is not None:
            timeout = float(timeout)
            timeout = None if timeout < 0 else timeout / 1000.0
        if not self._fds:
            if timeout is None:
                _wait_forever()
            if timeout:

                time.sleep(timeout)
            return []
        return _wait_poll(list(self._fds.items()), _ns(timeout))


class epoll:
    """`select.epoll()` on the WIT `selector` resource. Socketpair ends
    (asyncio's self-pipe) are watched here, in the plugin; the host
    selector is made on the first registration of a sockshim socket."""

    def __init__(self, sizehint=-1, flags=0):
        self._sel = None
        self._masks = {}  # fd -> mask, every registration
        self._mem = {}  # fd -> _MemEnd
        self._closed = False
        self._fd = _s._register(self)

    def _check(self):
        if self._closed:
            raise ValueError("I/O operation on closed epoll object")

    def fileno(self):
        self._check()
        return self._fd

    @property
    def closed(self):
        return self._closed

    def close(self):
        if self._closed:
            return
        self._closed = True
        _s._table.pop(self._fd, None)
        if self._sel is not None:
            self._sel.__exit__(None, None, None)
            self._sel = None

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *a):
        self.close()

    def register(self, fd, eventmask=POLLIN | POLLPRI | POLLOUT):
        self._check()
        fd = _fd(fd)
        if fd in self._masks:
            raise FileExistsError(_errno.EEXIST, "File exists")
        b = _s._table.get(fd)
        if b is None or isinstance(b, epoll):
            raise OSError(_errno.EBADF, "Bad file descriptor")
        if isinstance(b, _s._MemEnd):
            self._mem[fd] = b
        else:
            if self._sel is None:
                try:
                    self._sel = _ss.Selector.create()
                except _Err as e:
                    _s._raise(e.value)
            try:
                self._sel.register(b, fd, _to_events(eventmask))
            except _Err as e:
                _s._raise(e.value)
        self._masks[fd] = eventmask

    def modify(self, fd, eventmask):
        self._check()
        fd = _fd(fd)
        if fd not in self._masks:
            raise FileNotFoundError(_errno.ENOENT, "No such file or directory")
        if fd not in self._mem:
            try:
                self._sel.modify(fd, _to_events(eventmask))
            except _Err as e:
                _s._raise(e.value)
        self._masks[fd] = eventmask

    def unregister(self, fd):
        self._check()
        fd = _fd(fd)
        if fd not in self._masks:
            raise FileNotFoundError(_errno.ENOENT, "No such file or directory")
        del self._masks[fd]
        if self._mem.pop(fd, None) is None:
            try:
                self._sel.unregister(fd)
            except _Err as e:
                _s._raise(e.value)

    def poll(self, timeout=None, maxevents=-1):
        self._check()
        if timeout is not None:
            timeout = float(timeout)
            if timeout < 0:
                timeout = None
        out = []
        for fd, b in self._mem.items():
            r = _mem_revents(b, self._masks[fd])
            if r:
                out.append((fd, r))
        timeout_ns = 0 if out else _ns(timeout)
        if self._sel is None:
            if timeout_ns:

                time.sleep(timeout_ns / 1e9)
            elif timeout_ns is None and not out:
                _wait_forever()
            return out
        if maxevents is None or maxevents < 0:
            maxevents = 0
        try:
            ready = self._sel.wait(timeout_ns, maxevents)
        except _Err as e:
            _s._raise(e.value)
        for r in ready:
            out.append((r.key, _from_events(r.events)))
        return out
