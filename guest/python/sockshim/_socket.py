"""A pure-Python `_socket` over the sockshim WIT.

The standard library's `socket.py` builds its `socket` class on this
module's `socket`, so everything above it (`makefile`, `create_connection`,
`http.client`, `socketserver`, `asyncio`) runs unmodified. Nothing here calls
the host at import time: componentize-py imports the app while it builds the
component, when no host import may be called.

File descriptor numbers: `fileno()` returns a number from a table of this
module's own, above any descriptor wasi-libc hands out, so that `selectors`
and `asyncio` can key on it. Those numbers mean nothing to `os`; `sockshim`
never passes them there.
"""

import errno as _errno
import ipaddress as _ipaddress
import os as _os
import struct as _struct

from ._wit import ss as _ss, Err as _Err

AF_UNSPEC = 0
AF_INET = 2
AF_INET6 = 10
AF_UNIX = 1
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
SOCK_NONBLOCK = 0o4000
SOCK_CLOEXEC = 0o2000000
IPPROTO_IP = 0
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
SOL_SOCKET = 1
SOL_TCP = 6
SO_REUSEADDR = 2
SO_TYPE = 3
SO_ERROR = 4
SO_SNDBUF = 7
SO_RCVBUF = 8
SO_KEEPALIVE = 9
SO_LINGER = 13
SO_REUSEPORT = 15
TCP_NODELAY = 1
IPV6_V6ONLY = 26
SHUT_RD = 0
SHUT_WR = 1
SHUT_RDWR = 2
SOMAXCONN = 4096
MSG_PEEK = 2
MSG_DONTWAIT = 0x40
AI_PASSIVE = 1
AI_CANONNAME = 2
AI_NUMERICHOST = 4
AI_NUMERICSERV = 0x400
AI_ADDRCONFIG = 0x20
AI_V4MAPPED = 8
AI_ALL = 0x10
NI_NUMERICHOST = 1
NI_NUMERICSERV = 2
NI_NAMEREQD = 8
NI_DGRAM = 16
NI_NOFQDN = 4
NI_MAXHOST = 1025
NI_MAXSERV = 32
EAI_AGAIN = -3
EAI_FAIL = -4
EAI_FAMILY = -6
EAI_NONAME = -2
EAI_SERVICE = -8
EAI_SOCKTYPE = -7
INADDR_ANY = 0
INADDR_LOOPBACK = 0x7F000001
has_ipv6 = True

error = OSError
timeout = TimeoutError


class herror(OSError):
    pass


class gaierror(OSError):
    pass


# Descriptor numbers of sockshim sockets start here: wasi-libc numbers its
# own descriptors from 3 upwards, far below.
_FD_BASE = 1 << 20
_next_fd = _FD_BASE
# fake fd -> backend (a WIT socket or an in-memory pair end)
_table = {}

_default_timeout = None


def _register(backend):
    global _next_fd
    fd = _next_fd
    _next_fd += 1
    _table[fd] = backend
    return fd


def _backend(fd):
    try:
        return _table[fd]
    except KeyError:
        raise OSError(_errno.EBADF, "Bad file descriptor") from None


def _not_ours(fd):
    """The error for a descriptor number that is no sockshim socket, as
    CPython's for a descriptor that is no socket: `ENOTSOCK` when wasi-libc
    has it open (a file, stdin; CPython's own `_socket` sockets too, which
    this module cannot adopt), else `EBADF`."""
    try:
        _os.fstat(fd)
    except (OSError, OverflowError, TypeError):
        return OSError(_errno.EBADF, "Bad file descriptor")
    return OSError(
        _errno.ENOTSOCK,
        "Socket operation on non-socket: descriptor %d is not a sockshim socket "
        "(only the fileno() of a sockshim socket is)" % fd,
    )


def _oserror(code, err=None):
    return OSError(code, err or _os.strerror(code))


def _raise(e):
    """Raises the Python exception of a WIT `error-code`."""
    raise _exception(e) from None


def _exception(e):
    c = type(e).__name__.split("_", 1)[-1]
    if c == "Timeout":
        return TimeoutError("timed out")
    if c == "WouldBlock":
        return BlockingIOError(_errno.EAGAIN, "Resource temporarily unavailable")
    if c == "InProgress":
        return BlockingIOError(_errno.EINPROGRESS, "Operation now in progress")
    if c == "ConnectionRefused":
        return _oserror(_errno.ECONNREFUSED, "Connection refused")
    if c == "ConnectionReset":
        return _oserror(_errno.ECONNRESET, "Connection reset by peer")
    if c == "ConnectionAborted":
        return _oserror(_errno.ECONNABORTED, "Connection aborted")
    if c == "BrokenPipe":
        return _oserror(_errno.EPIPE, "Broken pipe")
    if c == "NotConnected":
        return _oserror(_errno.ENOTCONN, "Socket is not connected")
    if c == "AddressInUse":
        return _oserror(_errno.EADDRINUSE, "Address already in use")
    if c == "AddressNotAvailable":
        return _oserror(_errno.EADDRNOTAVAIL, "Cannot assign requested address")
    if c == "AccessDenied":
        return PermissionError(_errno.EACCES, e.value)
    if c == "InvalidArgument":
        return _oserror(_errno.EINVAL, e.value)
    if c == "LimitReached":
        return _oserror(_errno.EMFILE, e.value)
    if c == "Os":
        return _oserror(e.value)
    if c == "TemporaryLookupFailure":
        return gaierror(EAI_AGAIN, "Temporary failure in name resolution")
    return OSError(repr(e))


def _errno_of(e):
    exc = _exception(e)
    return exc.errno if exc.errno is not None else _errno.ETIMEDOUT


def _wit_timeout(t):
    if t is None:
        return _ss.Timeout_Blocking()
    if t == 0:
        return _ss.Timeout_NonBlocking()
    return _ss.Timeout_After(max(1, int(t * 1e9)))


def _py_timeout(t):
    if isinstance(t, _ss.Timeout_Blocking):
        return None
    if isinstance(t, _ss.Timeout_NonBlocking):
        return 0.0
    return t.value / 1e9


def _check_timeout(value):
    if value is None:
        return None
    value = float(value)
    if value != value:
        raise ValueError("Invalid value NaN (not a number)")
    if value < 0:
        raise ValueError("Timeout value out of range")
    return value


def getdefaulttimeout():
    return _default_timeout


def setdefaulttimeout(value):
    global _default_timeout
    value = _check_timeout(value)
    _ss.set_default_timeout(_wit_timeout(value))
    _default_timeout = value


def _py_address(a):
    if isinstance(a, _ss.SocketAddress_Ipv4):
        return ("%d.%d.%d.%d" % a.value.address, a.value.port)
    v = a.value
    return (_ipv6_text(v.address), v.port, v.flow_info, v.scope_id)


def _ipv6_text(groups):
    return str(_ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups)))


def _ip_text(ip):
    if isinstance(ip, _ss.IpAddress_Ipv4):
        return "%d.%d.%d.%d" % ip.value
    return _ipv6_text(ip.value)


def _host_port(address, family):
    if not isinstance(address, tuple) or len(address) < 2:
        if family == AF_INET6:
            raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
        raise TypeError("AF_INET address must be tuple, not %s" % type(address).__name__)
    host, port = address[0], address[1]
    if isinstance(host, (bytes, bytearray)):
        host = host.decode("idna")
    if not isinstance(port, int):
        raise TypeError("'%s' object cannot be interpreted as an integer" % type(port).__name__)
    if not 0 <= port <= 65535:
        raise OverflowError("bind(): port must be 0-65535.")
    if host == "<broadcast>":
        host = "255.255.255.255"
    return host, port


class _MemEnd:
    """One end of `socketpair()`: bytes in the plugin's memory, for
    asyncio's self-pipe (one thread, so a write always precedes the wait
    that should see it)."""

    def __init__(self):
        self.buf = bytearray()
        self.peer = None
        self.closed = False
        self.shut_wr = False

    def readable(self):
        return bool(self.buf) or self.peer is None or self.peer.closed or self.peer.shut_wr


class socket:
    """`_socket.socket`: a sockshim socket (or a `socketpair` end)."""

    __slots__ = ("_fd", "_family", "_type", "_proto", "_timeout")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is not None:
            if not isinstance(fileno, int) or isinstance(fileno, bool):
                raise TypeError("fileno must be an integer, not %s" % type(fileno).__name__)
            if fileno < 0:
                raise ValueError("negative file descriptor")
            b = _table.get(fileno)
            if b is None:
                raise _not_ours(fileno)
            self._fd = fileno
            if isinstance(b, _MemEnd):
                self._family = AF_UNIX
                self._type = SOCK_STREAM
                self._timeout = _default_timeout
            else:
                self._family = AF_INET6 if b.family() == _ss.AddressFamily.IPV6 else AF_INET
                self._type = type if type in (SOCK_STREAM, SOCK_DGRAM) else SOCK_STREAM
                self._timeout = _py_timeout(b.get_timeout())
            self._proto = proto if proto != -1 else 0
            return
        if family == -1:
            family = AF_INET
        if type == -1:
            type = SOCK_STREAM
        if proto == -1:
            proto = 0
        nonblock = bool(type & SOCK_NONBLOCK)
        type &= ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
        if family not in (AF_INET, AF_INET6):
            raise OSError(_errno.EAFNOSUPPORT, "Address family not supported by protocol")
        if type not in (SOCK_STREAM, SOCK_DGRAM):
            raise OSError(_errno.EPROTONOSUPPORT, "Protocol not supported")
        try:
            b = _ss.Socket.create(
                _ss.AddressFamily.IPV6 if family == AF_INET6 else _ss.AddressFamily.IPV4,
                _ss.SocketType.DATAGRAM if type == SOCK_DGRAM else _ss.SocketType.STREAM,
            )
        except _Err as e:
            _raise(e.value)
        self._fd = _register(b)
        self._family = family
        self._type = type
        self._proto = proto
        self._timeout = _default_timeout
        if nonblock:
            self.setblocking(False)

    # -- attributes -------------------------------------------------------
    @property
    def family(self):
        return self._family

    @property
    def type(self):
        return self._type

    @property
    def proto(self):
        return self._proto

    @property
    def timeout(self):
        return self._timeout

    def _b(self):
        if self._fd < 0:
            raise OSError(_errno.EBADF, "Bad file descriptor")
        return _backend(self._fd)

    def _sock(self):
        b = self._b()
        if isinstance(b, _MemEnd):
            raise OSError(_errno.EOPNOTSUPP, "Operation not supported on a socketpair end")
        return b

    def fileno(self):
        return self._fd

    def detach(self):
        fd = self._fd
        self._fd = -1
        return fd

    def close(self):
        fd = self._fd
        self._fd = -1
        b = _table.pop(fd, None)
        if b is None:
            return
        if isinstance(b, _MemEnd):
            b.closed = True
        else:
            b.__exit__(None, None, None)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return "<sockshim socket fd=%d, family=%d, type=%d>" % (self._fd, self._family, self._type)

    # -- timeouts ---------------------------------------------------------
    def settimeout(self, value):
        value = _check_timeout(value)
        b = self._b()
        if not isinstance(b, _MemEnd):
            b.set_timeout(_wit_timeout(value))
        self._timeout = value

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag):
        self.settimeout(None if flag else 0.0)

    def getblocking(self):
        return self._timeout != 0.0

    # -- connections ------------------------------------------------------
    def bind(self, address):
        host, port = _host_port(address, self._family)
        try:
            self._sock().bind(host, port)
        except _Err as e:
            _raise(e.value)

    def listen(self, backlog=SOMAXCONN):
        try:
            self._sock().listen(max(0, min(int(backlog), SOMAXCONN)))
        except _Err as e:
            _raise(e.value)

    def _accept(self):
        try:
            s, addr = self._sock().accept()
        except _Err as e:
            _raise(e.value)
        return _register(s), _py_address(addr)

    def connect(self, address):
        host, port = _host_port(address, self._family)
        try:
            self._sock().connect(host, port)
        except _Err as e:
            _raise(e.value)

    def connect_ex(self, address):
        host, port = _host_port(address, self._family)
        try:
            self._sock().connect(host, port)
        except _Err as e:
            if isinstance(e.value, _ss.ErrorCode_AccessDenied):
                _raise(e.value)
            return _errno_of(e.value)
        return 0

    def getsockname(self):
        try:
            return _py_address(self._sock().local_address())
        except _Err as e:
            _raise(e.value)

    def getpeername(self):
        try:
            return _py_address(self._sock().remote_address())
        except _Err as e:
            _raise(e.value)

    def shutdown(self, how):
        b = self._b()
        if isinstance(b, _MemEnd):
            if how in (SHUT_WR, SHUT_RDWR):
                b.shut_wr = True
            return
        try:
            b.shutdown([_ss.ShutdownHow.READ, _ss.ShutdownHow.WRITE, _ss.ShutdownHow.BOTH][how])
        except _Err as e:
            _raise(e.value)
        except IndexError:
            raise OSError(_errno.EINVAL, "Invalid argument") from None

    # -- bytes ------------------------------------------------------------
    def recv(self, bufsize, flags=0):
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        b = self._b()
        if isinstance(b, _MemEnd):
            if not b.buf:
                if b.readable():
                    return b""
                raise BlockingIOError(_errno.EAGAIN, "Resource temporarily unavailable")
            data = bytes(b.buf[:bufsize])
            del b.buf[:bufsize]
            return data
        try:
            return b.recv(min(bufsize, _max_recv()))
        except _Err as e:
            _raise(e.value)

    def recv_into(self, buffer, nbytes=0, flags=0):
        view = memoryview(buffer).cast("B")
        n = nbytes or len(view)
        data = self.recv(n, flags)
        view[: len(data)] = data
        return len(data)

    def recvfrom(self, bufsize, flags=0):
        try:
            data, addr = self._sock().recvfrom(min(bufsize, _max_recv()))
        except _Err as e:
            _raise(e.value)
        return data, _py_address(addr)

    def recvfrom_into(self, buffer, nbytes=0, flags=0):
        view = memoryview(buffer).cast("B")
        data, addr = self.recvfrom(nbytes or len(view), flags)
        view[: len(data)] = data
        return len(data), addr

    def send(self, data, flags=0):
        b = self._b()
        if isinstance(b, _MemEnd):
            if b.peer is None or b.peer.closed:
                raise BrokenPipeError(_errno.EPIPE, "Broken pipe")
            b.peer.buf += data
            return len(data)
        try:
            return b.send(bytes(data))
        except _Err as e:
            _raise(e.value)

    def sendall(self, data, flags=0):
        b = self._b()
        if isinstance(b, _MemEnd):
            self.send(data)
            return None
        try:
            b.sendall(bytes(data))
        except _Err as e:
            _raise(e.value.code)

    def sendto(self, data, flags_or_address, address=None):
        if address is None:
            address = flags_or_address
        host, port = _host_port(address, self._family)
        try:
            return self._sock().sendto(bytes(data), host, port)
        except _Err as e:
            _raise(e.value)

    # -- options ----------------------------------------------------------
    def setsockopt(self, level, optname, value, optlen=None):
        b = self._b()
        if isinstance(b, _MemEnd):
            return
        o = None
        if level == SOL_SOCKET and optname == SO_REUSEADDR:
            o = _ss.SocketOption_ReuseAddress(bool(value))
        elif level == SOL_SOCKET and optname == SO_KEEPALIVE:
            o = _ss.SocketOption_KeepAlive(bool(value))
        elif level == SOL_SOCKET and optname == SO_RCVBUF:
            o = _ss.SocketOption_ReceiveBufferSize(int(value))
        elif level == SOL_SOCKET and optname == SO_SNDBUF:
            o = _ss.SocketOption_SendBufferSize(int(value))
        elif level == IPPROTO_TCP and optname == TCP_NODELAY:
            o = _ss.SocketOption_TcpNodelay(bool(value))
        elif level == SOL_SOCKET and optname == SO_LINGER and isinstance(value, (bytes, bytearray)):
            on, secs = _struct.unpack("ii", bytes(value)[:8])
            o = _ss.SocketOption_Linger(secs if on else None)
        elif level == IPPROTO_IPV6 and optname == IPV6_V6ONLY:
            return  # the host's default (dual stack off) stands
        elif level == SOL_SOCKET and optname == SO_REUSEPORT:
            raise OSError(_errno.ENOPROTOOPT, "Protocol not available")
        if o is None:
            raise OSError(_errno.ENOPROTOOPT, "Protocol not available")
        try:
            b.set_option(o)
        except _Err as e:
            _raise(e.value)

    def getsockopt(self, level, optname, buflen=None):
        b = self._b()
        if isinstance(b, _MemEnd):
            return 0
        if level == SOL_SOCKET and optname == SO_ERROR:
            try:
                e = b.take_error()
            except _Err as x:
                _raise(x.value)
            return 0 if e is None else _errno_of(e)
        if level == SOL_SOCKET and optname == SO_TYPE:
            return self._type
        names = {
            (SOL_SOCKET, SO_REUSEADDR): _ss.OptionName.REUSE_ADDRESS,
            (SOL_SOCKET, SO_KEEPALIVE): _ss.OptionName.KEEP_ALIVE,
            (SOL_SOCKET, SO_RCVBUF): _ss.OptionName.RECEIVE_BUFFER_SIZE,
            (SOL_SOCKET, SO_SNDBUF): _ss.OptionName.SEND_BUFFER_SIZE,
            (IPPROTO_TCP, TCP_NODELAY): _ss.OptionName.TCP_NODELAY,
        }
        name = names.get((level, optname))
        if name is None:
            raise OSError(_errno.ENOPROTOOPT, "Protocol not available")
        try:
            v = b.get_option(name).value
        except _Err as e:
            _raise(e.value)
        return int(v)

    # -- sockshim extras --------------------------------------------------
    def _sendfile(self, descriptor, offset, count):
        """Sends from a wasi:filesystem descriptor on the host's
        sendfile(2) path; returns (sent, exception or None)."""
        try:
            return self._sock().sendfile(descriptor, offset, count, None), None
        except _Err as e:
            return e.value.bytes_sent, _exception(e.value.code)

    def _sendfile_once(self, descriptor, offset, count):
        return socket._sendfile_once_on(self._sock(), descriptor, offset, count)

    @staticmethod
    def _sendfile_once_on(backend, descriptor, offset, count):
        """The WIT `sendfile-once` on a socket's backend: `os.sendfile`."""
        try:
            return backend.sendfile_once(descriptor, offset, count)
        except _Err as e:
            _raise(e.value)


# The most one `recv` asks the host for: the host's `max-recv-size` (16 MiB),
# asked once, on the first receive (no host call may run while the
# component is built). The host allocates exactly the bytes it returns in the
# plugin and receives straight into them.
_max_recv_size = None


def _max_recv():
    global _max_recv_size
    if _max_recv_size is None:
        _max_recv_size = _ss.max_recv_size()
    return _max_recv_size


SocketType = socket


def socketpair(family=AF_UNIX, type=SOCK_STREAM, proto=0):
    """An in-memory connected pair, enough for asyncio's self-pipe; it needs
    no address and no policy rule."""
    a, b = _MemEnd(), _MemEnd()
    a.peer, b.peer = b, a
    return socket(fileno=_register(a)), socket(fileno=_register(b))


def dup(fd):
    """CPython's `_socket.dup`, behind `socket.dup()` and `socket.fromfd`:
    not supported for a sockshim socket (the host holds one descriptor per
    socket, with no way to share it between two socket objects); for any
    other number the error CPython gives for a descriptor that is no
    socket."""
    if fd in _table:
        raise OSError(
            _errno.ENOTSUP,
            "sockshim sockets cannot be duplicated (socket.dup, socket.fromfd); "
            "share the socket object instead",
        )
    raise _not_ours(fd)


def close(fd):
    b = _table.pop(fd, None)
    if b is None:
        raise OSError(_errno.EBADF, "Bad file descriptor")
    if isinstance(b, _MemEnd):
        b.closed = True
    else:
        b.__exit__(None, None, None)


_SERVICES = {
    "http": 80, "https": 443, "ftp": 21, "ssh": 22, "smtp": 25, "domain": 53,
    "echo": 7, "imap": 143, "pop3": 110, "ntp": 123,
}


def _port(port, flags):
    if port is None:
        return 0
    if isinstance(port, int):
        return port
    if isinstance(port, bytes):
        port = port.decode()
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        if flags & AI_NUMERICSERV or port not in _SERVICES:
            raise gaierror(EAI_SERVICE, "Servname not supported for ai_socktype")
        return _SERVICES[port]
    raise OSError("Int or String expected")


def _literal(host):
    try:
        return _ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    """Python's `getaddrinfo`: literal addresses are parsed here, names are
    resolved by the host under the policy (`resolve-addresses`)."""
    portnum = _port(port, flags)
    if isinstance(host, (bytes, bytearray)):
        host = host.decode("idna")
    if host is None or host == "":
        if host is None and port is None:
            raise gaierror(EAI_NONAME, "Name or service not known")
        texts = ["0.0.0.0" if flags & AI_PASSIVE else "127.0.0.1"]
        if family == AF_INET6:
            texts = ["::" if flags & AI_PASSIVE else "::1"]
    elif _literal(host) is not None:
        texts = [host]
    elif flags & AI_NUMERICHOST:
        raise gaierror(EAI_NONAME, "Name or service not known")
    else:
        try:
            texts = [_ip_text(a) for a in _ss.resolve_addresses(host)]
        except _Err as e:
            if isinstance(e.value, _ss.ErrorCode_AddressNotAvailable):
                raise gaierror(EAI_NONAME, "Name or service not known") from None
            _raise(e.value)
    kinds = [(SOCK_STREAM, IPPROTO_TCP), (SOCK_DGRAM, IPPROTO_UDP)]
    if type:
        kinds = [(type, proto or dict(kinds).get(type, 0))]
    out = []
    for text in texts:
        fam = AF_INET6 if ":" in text else AF_INET
        if family not in (0, fam):
            continue
        addr = (text, portnum) if fam == AF_INET else (text, portnum, 0, 0)
        for t, p in kinds:
            out.append((fam, t, p, "", addr))
    if not out:
        raise gaierror(EAI_FAMILY, "ai_family not supported")
    return out


def gethostbyname(host):
    for fam, _, _, _, addr in getaddrinfo(host, None, AF_INET):
        return addr[0]
    raise gaierror(EAI_NONAME, "Name or service not known")


def gethostbyname_ex(host):
    addrs = [a[4][0] for a in getaddrinfo(host, None, AF_INET, SOCK_STREAM)]
    return host, [], addrs


def gethostname():
    return "localhost"


def gethostbyaddr(ip):
    return ip, [], [ip]


def getfqdn(name=""):
    return name or "localhost"


def getnameinfo(sockaddr, flags):
    host, port = sockaddr[0], sockaddr[1]
    return host, str(port)


def getservbyname(name, proto=None):
    try:
        return _SERVICES[name]
    except KeyError:
        raise OSError("service/proto not found") from None


def getservbyport(port, proto=None):
    for k, v in _SERVICES.items():
        if v == port:
            return k
    raise OSError("port/proto not found")


def getprotobyname(name):
    return {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "ip": IPPROTO_IP}[name]


def inet_aton(s):
    return _ipaddress.IPv4Address(s).packed


def inet_ntoa(b):
    return "%d.%d.%d.%d" % tuple(b)


def inet_pton(family, s):
    return (_ipaddress.IPv6Address if family == AF_INET6 else _ipaddress.IPv4Address)(s).packed


def inet_ntop(family, b):
    return str((_ipaddress.IPv6Address if family == AF_INET6 else _ipaddress.IPv4Address)(bytes(b)))


def htons(x):
    return ((x & 0xFF) << 8) | ((x >> 8) & 0xFF)


ntohs = htons


def htonl(x):
    return int.from_bytes(x.to_bytes(4, "little"), "big")


ntohl = htonl


CAPI = None
