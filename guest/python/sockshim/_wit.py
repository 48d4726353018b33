"""The generated bindings of the `python-plugin` world, in one place.

`scripts/python-plugin.sh` pins the sockshim interface's module name with
`--import-interface-name sockshim:socket/socket@0.1.0=sockshim_socket`, so
the names below do not depend on the world's other imports.
"""

from wit_world.imports import sockshim_socket as ss  # noqa: F401
from wit_world.imports import types as fs  # noqa: F401
from wit_world.imports import preopens  # noqa: F401
from componentize_py_types import Err  # noqa: F401
