"""sockshim for Python plugins: `import socket` over sockshim's host.

The first line of a plugin is::

    import sockshim; sockshim.install()

It puts pure-Python replacements of the C modules `_socket` and `select` in
`sys.modules`, so the standard library's own `socket`, `selectors`,
`http.client`, `urllib.request`, `socketserver`, `http.server` and `asyncio`
run on sockshim sockets, under the host's policy. See guest/python/README.md.
"""

import os
import posixpath
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
