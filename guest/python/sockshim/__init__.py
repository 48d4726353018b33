"""sockshim for Python plugins: `import socket` over sockshim's host.

The first line of a plugin is::

    import sockshim; sockshim.install()

It puts pure-Python replacements of the C modules `_socket` and `select` in
`sys.modules`, so the standard library's own `socket`, `selectors`,
`http.client`, `urllib.request`, `socketserver`, `http.server` and `asyncio`
run on sockshim sockets, under the host's policy. See guest/python/README.md.
"""

import builtins
import errno
import functools
import io
import os
import posixpath
import stat
import sys

__all__ = ["install", "sendfile", "open_descriptor", "builtin_socket_module"]

_installed = False
_builtin = None


def builtin_socket_module():
    """CPython's own C `_socket` (over wasi:sockets 0.2, which the host holds
    to the same policy), or None; for comparison and tests only."""
    return _builtin


def install():
    """Makes `_socket` and `select` sockshim's. Call it before anything
    imports `socket`; calling it again does nothing."""
    global _installed
    if _installed:
        return
    from . import _socket as s, select as sel

    already = sys.modules.get("socket")
    if already is not None and getattr(already, "_socket", None) is not s:
        raise RuntimeError("sockshim.install() must run before `import socket`")
    global _builtin
    try:
        prev = sys.modules.get("_socket")
        if prev is None:
            import _socket as prev
        _builtin = prev if prev is not s else None
    except ImportError:
        _builtin = None
    sys.modules["_socket"] = s
    sys.modules["select"] = sel
    import socket

    socket.socket._sendfile_use_sendfile = _sendfile_use_sendfile
    if not hasattr(os, "sendfile"):  # WASI's CPython has none
        builtins.open = io.open = _tracking(io.open)
        os.open = _tracking(os.open)
        os.sendfile = _os_sendfile
    _installed = True


# -- files: from a Python file object to a wasi:filesystem descriptor -------

_preopens = None


def _preopened():
    global _preopens
    if _preopens is None:
        from ._wit import preopens

        dirs = preopens.get_directories()
        # longest guest path first, so the most specific preopen wins
        _preopens = sorted(dirs, key=lambda d: -len(d[1]))
    return _preopens


def open_descriptor(path):
    """Opens `path` for reading through the generated wasi:filesystem
    bindings, from the preopened directory that holds it, and returns the
    descriptor (a `wit_world.imports.types.Descriptor`) that the WIT's
    `sendfile` takes. Raises OSError when no preopen holds the path."""
    from ._wit import fs, Err

    if isinstance(path, bytes):
        path = os.fsdecode(path)
    full = posixpath.normpath(posixpath.join(os.getcwd(), os.fspath(path)))
    for desc, guest in _preopened():
        g = posixpath.normpath(guest if guest.startswith("/") else "/" + guest)
        if full == g or full.startswith(g.rstrip("/") + "/"):
            rel = full[len(g):].lstrip("/") or "."
            try:
                return desc.open_at(fs.PathFlags.SYMLINK_FOLLOW, rel, fs.OpenFlags(0), fs.DescriptorFlags.READ)
            except Err as e:
                raise OSError(5, "cannot open %s for sendfile: %s" % (full, e.value)) from None
    raise FileNotFoundError(2, "no preopened directory holds %s" % full)


def _descriptor_of(file):
    name = getattr(file, "name", None)
    if not isinstance(name, (str, bytes)) or "b" not in getattr(file, "mode", "b"):
        return None
    try:
        return open_descriptor(name)
    except OSError:
        return None


def _sendfile_use_sendfile(self, file, offset=0, count=None):
    """`socket.socket.sendfile`'s zero-copy path: the host's sendfile(2)
    from a descriptor opened on the file's path. A file object with no path
    in a preopened directory falls back to the stdlib's send loop."""
    import socket

    self._check_sendfile_params(file, offset, count)
    if self.gettimeout() == 0:
        raise ValueError("non-blocking sockets are not supported")
    desc = _descriptor_of(file)
    if desc is None:
        raise socket._GiveupOnSendfile("no descriptor for %r" % (file,))
    try:
        if count is not None and count <= 0:
            return 0
        sent, exc = self._sendfile(desc, offset, count)
    finally:
        desc.__exit__(None, None, None)
    if sent > 0 and hasattr(file, "seek"):
        file.seek(offset + sent)
    if exc is not None:
        raise exc
    return sent


def sendfile(out_sock, in_file, offset, count):
    """`os.sendfile(out_fd, in_fd, offset, count)` for a sockshim socket
    and a file: one sendfile(2) on the host (the WIT `sendfile-once`),
    returning how many bytes the socket took; `BlockingIOError` on a
    non-blocking socket that takes nothing now. `in_file` is a file object
    or a path in a preopened directory (never a descriptor number, which
    the host cannot see)."""
    if isinstance(in_file, int):
        raise TypeError("sockshim.sendfile takes a file object or a path, not a descriptor number")
    path = in_file if isinstance(in_file, (str, bytes)) else in_file.name
    desc = open_descriptor(path)
    try:
        return out_sock._sendfile_once(desc, offset, count)
    finally:
        desc.__exit__(None, None, None)


# -- os.sendfile: a file's descriptor number back to its path ---------------
#
# wasi-libc's descriptor numbers cannot be turned into a wasi:filesystem
# resource from Python, so `install()` wraps `open`, `io.open` and `os.open`
# to note the path of each regular file they open, with its device and inode;
# `os.sendfile` opens that path again from its preopen, after checking that
# the descriptor and the path still name that file.

# descriptor number -> (absolute path, (st_dev, st_ino))
_opened = {}


def _note_open(fd, path):
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        path = os.fsdecode(os.fspath(path))
        full = posixpath.normpath(posixpath.join(os.getcwd(), path))
    except (OSError, TypeError, ValueError):
        return
    _opened[fd] = (full, (st.st_dev, st.st_ino))


def _tracking(real):
    @functools.wraps(real)
    def opener(file, *args, **kwargs):
        f = real(file, *args, **kwargs)
        if isinstance(file, (str, bytes, os.PathLike)) and kwargs.get("dir_fd") is None:
            _note_open(f if isinstance(f, int) else f.fileno(), file)
        return f

    return opener


def _os_sendfile(out_fd, in_fd, offset, count):
    """`os.sendfile(out_fd, in_fd, offset, count)`: `out_fd` a sockshim
    socket's `fileno()`, `in_fd` the `fileno()` of a regular file the plugin
    opened by its path (`open`, `os.open`) in a preopened directory. One
    sendfile(2) on the host (the WIT `sendfile-once`): returns the bytes the
    socket took, 0 at the end of the file, `BlockingIOError` when a
    non-blocking socket takes nothing now. `offset` None sends from the
    file's position and advances it, as on Linux."""
    from . import _socket as s

    backend = s._table.get(out_fd)
    if backend is None or isinstance(backend, s._MemEnd):
        raise OSError(errno.EINVAL, "os.sendfile: out_fd %r is not a sockshim socket" % (out_fd,))
    if count < 0 or (offset is not None and offset < 0):
        raise OSError(errno.EINVAL, "Invalid argument")
    noted = _opened.get(in_fd)
    try:
        st = os.fstat(in_fd)
    except OSError:
        raise OSError(errno.EBADF, "Bad file descriptor") from None
    if noted is None or noted[1] != (st.st_dev, st.st_ino):
        raise OSError(
            errno.EINVAL,
            "os.sendfile: in_fd %d is not a regular file the plugin opened by its path" % in_fd,
        )
    path = noted[0]
    try:
        again = os.stat(path)
    except OSError:
        again = None
    if again is None or (again.st_dev, again.st_ino) != noted[1]:
        raise OSError(errno.ESTALE, "os.sendfile: %s is no longer the file of in_fd %d" % (path, in_fd))
    position = os.lseek(in_fd, 0, os.SEEK_CUR) if offset is None else offset
    desc = open_descriptor(path)
    try:
        sent = s.socket._sendfile_once_on(backend, desc, position, count)
    finally:
        desc.__exit__(None, None, None)
    if offset is None:
        os.lseek(in_fd, position + sent, os.SEEK_SET)
    return sent
