"""The app module of every Python plugin (`scripts/python-plugin.sh` copies it
in as `sockshim_plugin_main`): it makes an ordinary script a WASI command.

While componentize-py builds the component, this module compiles the script
and runs only its import statements (only modules imported then exist when
the plugin runs, and no host import may be called then). When the plugin
runs, `Run.run` executes the whole script as `__main__`, with `sys.argv`
from the command line; `sys.exit(n)` is the exit status, and an uncaught
exception prints its traceback on stderr and exits with status 1.
"""

import ast
import os
import sys
import traceback

import sockshim

sockshim.install()

from componentize_py_types import Err  # noqa: E402
from wit_world.imports import environment  # noqa: E402
from wit_world.imports import exit as wasi_exit  # noqa: E402

import encodings.idna  # noqa: E402,F401  (urllib and http.client need it)

_here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_here, "sockshim_app_name.txt")) as _f:
    _NAME = _f.read().strip()
with open(os.path.join(_here, "sockshim_app_source.py"), "rb") as _f:
    _SOURCE = _f.read()

_tree = ast.parse(_SOURCE, _NAME)
_CODE = compile(_tree, _NAME, "exec")


def _preimport(tree):
    """Imports every module the script names in an import statement,
    wherever it stands, so that it is part of the component."""
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            for a in node.names:
                names.append(node.module + "." + a.name)
        for name in names:
            if name in sys.modules:
                continue
            try:
                __import__(name)
            except ImportError:
                pass


_preimport(_tree)
del _tree


def _exit(code):
    sys.stdout.flush()
    sys.stderr.flush()
    if 0 < code < 256:
        # WASI 0.2.12's `exit-with-code` (0.2's `exit(err)` is always 1)
        wasi_exit.exit_with_code(code)
    wasi_exit.exit(Err(None))


class Run:
    def run(self) -> None:
        try:
            self._run()
        except BaseException:
            traceback.print_exc()
            _exit(1)

    def _run(self) -> None:
        args = environment.get_arguments()
        sys.argv = [_NAME] + list(args[1:]) if args else [_NAME]
        g = {"__name__": "__main__", "__file__": _NAME, "__builtins__": __builtins__}
        code = 0
        try:
            exec(_CODE, g)
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        try:
            sys.stdout.flush()
        except Exception:
            pass
        if code != 0:
            _exit(code)
