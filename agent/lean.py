"""Load what the agent's libraries import but never use only when something touches it.

paho-mqtt imports ``urllib.request`` at the top of its client, and with it http.client,
the whole email package, tempfile and shutil: about 1.3 MiB of a ~33 MiB agent on a
Raspberry Pi. paho reads it only to look up a SOCKS proxy (``mqtt_proxy`` in the
environment), which it can use only when PySocks is installed. Without PySocks it never
reads it, so the agent puts a stand-in module in ``sys.modules`` and imports the real one
the first time anything reads an attribute of it. With PySocks installed nothing is
deferred.

The stand-in behaves like the real module for every use: ``import urllib.request`` gets
it without loading anything; the first attribute read (``urllib.request.getproxies``,
``from urllib.request import urlopen``) imports the real module, puts it in
``sys.modules`` and on its package, and copies its names into the stand-in for anyone
who kept a reference.
"""

import importlib
import importlib.util
import sys
import threading
import types
from importlib.machinery import ModuleSpec
from typing import Any

# module -> the package whose absence means nothing will read it
UNUSED = {"urllib.request": "socks"}


class Deferred(types.ModuleType):
    """Stands in for module ``name`` until an attribute is read, then imports it."""

    def __init__(self, name: str, spec: ModuleSpec) -> None:
        super().__init__(name)
        # a real spec: the import system reads ``__spec__._initializing`` on every
        # ``import name``, and that must not count as a use
        self.__spec__ = spec
        self.__loader__ = spec.loader
        self._pantau_lock = threading.RLock()

    def __getattr__(self, attr: str) -> Any:
        # only called for names the stand-in does not have yet
        return getattr(self._pantau_load(), attr)

    def _pantau_load(self) -> types.ModuleType:
        with self._pantau_lock:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
                try:
                    real = importlib.import_module(self.__name__)
                except BaseException:
                    sys.modules[self.__name__] = self
                    raise
                self.__dict__.update(real.__dict__)
            return sys.modules[self.__name__]


def defer(name: str) -> bool:
    """Put a stand-in for ``name`` in ``sys.modules``; False if it is already imported
    or cannot be found (then nothing changes)."""
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)  # imports the parent package, not ``name``
    if spec is None:
        return False
    module = Deferred(name, spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return True


def defer_unused_imports() -> list[str]:
    """Defer every module in ``UNUSED`` whose only reader cannot run here; the names."""
    deferred = []
    for name, reader in UNUSED.items():
        if importlib.util.find_spec(reader) is None and defer(name):
            deferred.append(name)
    return deferred
