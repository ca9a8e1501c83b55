"""Run a function right after a named module is imported, in whichever process imports it.

The CPU patches must reach Ray workers and vLLM's engine subprocess, where no code of ours runs
first; the .pth hook installs this finder there, and each patch then applies itself when OpenRLHF
(or torch) loads the module it replaces a function of. Nothing is imported ahead of time.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Callable

_after_import: dict[str, list[Callable]] = {}


def after_import(module_name: str, fn: Callable) -> None:
    """Call fn(module) once module_name is imported (at once if it already is)."""
    _after_import.setdefault(module_name, []).append(fn)
    if module_name in sys.modules:
        fn(sys.modules[module_name])
    _ensure_finder()


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _after_import:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module, _exec=original_exec, _name=fullname):
            _exec(module)
            for fn in _after_import.get(_name, []):
                fn(module)

        spec.loader.exec_module = exec_module
        return spec


def _ensure_finder() -> None:
    if not any(isinstance(f, _AfterImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImportFinder())


class _ProvidedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serve modules that a factory puts into sys.modules on first import (the flash_attn stand-in)."""

    def __init__(self, prefix: str, factory: Callable[[], bool]):
        self.prefix, self.factory = prefix, factory
        self._busy = False  # the factory itself may probe whether the real package exists

    def find_spec(self, fullname, path, target=None):
        if self._busy or (fullname != self.prefix and not fullname.startswith(self.prefix + ".")):
            return None
        if fullname not in sys.modules:
            self._busy = True
            try:
                self.factory()
            finally:
                self._busy = False
        module = sys.modules.get(fullname)
        if module is None:
            return None
        # the import system answers with the registered module's own __spec__ when the module is already
        # in sys.modules; with no loader there it would build an empty namespace package in its place
        spec = getattr(module, "__spec__", None) or importlib.machinery.ModuleSpec(
            fullname, None, is_package=hasattr(module, "__path__"))
        spec.loader = self
        return spec

    def create_module(self, spec):
        return sys.modules[spec.name]

    def exec_module(self, module):
        pass


def provide_lazily(prefix: str, factory: Callable[[], bool]) -> None:
    """On the first `import prefix...`, call factory() (which registers the modules); appended last,
    so a real installed package of that name always wins."""
    if not any(isinstance(f, _ProvidedModules) and f.prefix == prefix for f in sys.meta_path):
        sys.meta_path.append(_ProvidedModules(prefix, factory))
