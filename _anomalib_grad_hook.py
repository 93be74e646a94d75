"""Register GRAD with anomalib whenever ``anomalib.models`` is imported.

anomalib has no plugin entry points, and jsonargparse resolves a bare class
name such as ``--model Grad`` only among subclasses already imported. The
``anomalib_grad.pth`` file installed next to this module runs
:func:`install` at interpreter start-up; it adds a meta-path finder that waits
for ``anomalib.models`` and, right after that module has executed, imports
``anomalib_grad``. Nothing else is imported, so programs that never touch
anomalib pay only for this small module.

Set ``ANOMALIB_GRAD_NO_HOOK=1`` to turn the hook off.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import traceback
from types import ModuleType

TRIGGER = "anomalib.models"
PLUGIN = "anomalib_grad"


class _RegisterAfterLoad(importlib.abc.Loader):
    """Wrap the real loader of ``anomalib.models`` and import the plugin after it."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        try:
            importlib.import_module(PLUGIN)
        except Exception as error:  # a broken plugin must not break anomalib itself, but must say so at once
            problem = "".join(traceback.format_exception_only(error)).strip()
            sys.stderr.write(
                f"{PLUGIN}: could not register GRAD with anomalib, so `--model Grad` will be unknown: {problem}\n"
                f"(import {PLUGIN} in Python for the full traceback; ANOMALIB_GRAD_NO_HOOK=1 turns this hook off)\n"
            )


class _AnomalibModelsFinder(importlib.abc.MetaPathFinder):
    """Find ``anomalib.models`` through the other finders and wrap its loader."""

    def find_spec(
        self,
        fullname: str,
        path: object = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TRIGGER:
            return None
        sys.meta_path.remove(self)  # one-shot: also keeps find_spec below from recursing
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfterLoad(spec.loader)
        return spec


def install() -> None:
    """Add the finder once, unless disabled or ``anomalib.models`` is already imported."""
    if os.environ.get("ANOMALIB_GRAD_NO_HOOK") == "1" or TRIGGER in sys.modules:
        return
    if not any(isinstance(finder, _AnomalibModelsFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AnomalibModelsFinder())
