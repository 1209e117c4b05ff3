"""MediaPipe's Tasks API, imported without what pose inference never calls.

``mediapipe.tasks.python.vision`` imports its drawing helpers, which import matplotlib's ``pyplot``: about a
quarter of a second of every cold start of a process that runs pose (the pose service, a worker, a range
pod), for plotting functions this project never calls. :func:`mediapipe` imports the API with ``matplotlib`` and
``matplotlib.pyplot`` standing in as modules that import the real ones on their first use, so nothing
changes for code that does use them.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

DEFERRED = ("matplotlib", "matplotlib.pyplot")


class DeferredModule(types.ModuleType):
    """Stands in for a module until one of its attributes is read; then imports the real one and answers from
    it. Attributes set on it (a package's submodules) are answered without importing anything."""

    def __getattr__(self, attr: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


@functools.cache
def mediapipe() -> types.ModuleType:
    """The ``mediapipe`` package with its Tasks API imported (``mediapipe.tasks.python``: ``BaseOptions``,
    ``vision``), matplotlib deferred where it is not imported yet. Cached: the estimator asks for it every
    frame."""
    if "mediapipe.tasks.python.vision" not in sys.modules and DEFERRED[0] not in sys.modules:
        spec = importlib.util.find_spec(DEFERRED[0])  # found, not run
        if spec is not None:
            package, pyplot = (DeferredModule(name) for name in DEFERRED)
            # Their specs, so that a check for the package (``find_spec``) still finds it.
            package.__spec__ = spec
            pyplot.__spec__ = importlib.machinery.PathFinder.find_spec(DEFERRED[1], spec.submodule_search_locations)
            package.pyplot = pyplot  # ``import matplotlib.pyplot as plt`` reads this attribute of the package
            sys.modules.update(zip(DEFERRED, (package, pyplot), strict=True))
    importlib.import_module("mediapipe.tasks.python.vision")
    return importlib.import_module("mediapipe")
