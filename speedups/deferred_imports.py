"""Defer the import of `tfx.v1.extensions` until something uses it.

`import tfx.v1` imports its `extensions` package eagerly, and that package imports the Google Cloud
AI Platform client (`google.cloud.aiplatform` with its generated v1 and v1beta1 services): 2.8 s of
every `conveyor` process on two cores (py-spy, one `conveyor run`), for clients no local run, server
or monitor ever calls. `defer_extensions()` puts a stand-in module for `tfx.v1.extensions` in
`sys.modules` before TFX is imported. The stand-in has the real package's spec and path, so
`import tfx.v1` and `import tfx.v1.extensions.google_cloud_ai_platform` work unchanged; the first
read of an attribute the stand-in does not have (`tfx.v1.extensions.google_cloud_ai_platform`, its
`__all__`) executes the real package into it, which is then the ordinary module. Other threads
reading it meanwhile wait for that load. (importlib's LazyLoader does not fit: the import system
reads the module's `__spec__` when TFX imports it, and any read makes a LazyLoader module load.)
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
import types
from typing import Any

from speedups import switch

EXTENSIONS = "tfx.v1.extensions"
_LOADING = "_deferred_import_loading"  # set in the stand-in's namespace while its package executes
_LOCK = threading.RLock()


class _LoadsOnFirstUse(types.ModuleType):
    def __getattr__(self, name: str) -> Any:  # only called for attributes the module lacks
        with _LOCK:
            if type(self) is _LoadsOnFirstUse:
                if self.__dict__.get(_LOADING):  # the package's own code, reading a name it has not set yet
                    raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
                self.__dict__[_LOADING] = True
                try:
                    self.__spec__.loader.exec_module(self)  # type: ignore[union-attr]  # set by defer()
                finally:
                    del self.__dict__[_LOADING]
                self.__class__ = types.ModuleType  # type: ignore[assignment]  # now the ordinary module
        return getattr(self, name)


def defer(name: str, init: str) -> types.ModuleType:
    """Put a stand-in for package `name` (its `__init__.py` at `init`) in `sys.modules`, loaded on first use."""
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[os.path.dirname(init)])
    if spec is None:
        raise ImportError(f"no package {name} at {init}")
    module = _LoadsOnFirstUse(name)
    attributes = {"__spec__": spec, "__loader__": spec.loader, "__file__": init, "__path__": spec.submodule_search_locations, "__package__": name}
    for attr, value in attributes.items():
        setattr(module, attr, value)
    sys.modules[name] = module
    return module


def defer_extensions() -> None:
    """Stand in for `tfx.v1.extensions` until first use; a no-op once TFX's `v1` is imported, or
    when the speedup is off (CONVEYOR_SPEEDUPS=0, or another TFX than the one it was tested on)."""
    if "tfx.v1" in sys.modules or EXTENSIONS in sys.modules:
        return
    if not switch.allowed("deferred_imports"):
        return
    tfx_spec = importlib.util.find_spec("tfx")  # finds the package without importing it
    if tfx_spec is None or not tfx_spec.submodule_search_locations:
        return
    for root in tfx_spec.submodule_search_locations:
        init = os.path.join(root, "v1", "extensions", "__init__.py")
        if os.path.exists(init):
            defer(EXTENSIONS, init)
            return
