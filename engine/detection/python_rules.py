"""Importing the Python module of a rule.

Each module is imported under a private, unique name so two rule folders may both hold a
`helpers.py`-style file of the same name without one shadowing the other, and so an import
failure is reported against the rule file instead of crashing the loader.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

OPTIONAL_FUNCTIONS = ("title", "dedup", "severity", "context", "destinations", "runbook")


class PythonRuleError(ValueError):
    """The module could not be imported, or does not define what a rule needs."""


def import_rule_module(path: Path) -> ModuleType:
    """Import `path` and check it defines `rule()` and only callables for the optional
    hooks; raises `PythonRuleError` with the cause (and the failing line if any)."""
    if not path.is_file():
        raise PythonRuleError(f"the module {path.name} does not exist beside the rule")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"detect_rules.{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PythonRuleError(f"{path.name} cannot be imported as a module")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as a normal import is: dataclasses and typing look their
    # module up in sys.modules while the body executes.
    sys.modules[name] = module
    # Let the module import its siblings (a helpers file beside it).
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" (line {frame.lineno} of {Path(frame.filename).name})" if frame else ""
        raise PythonRuleError(
            f"{path.name} failed to import: {type(exc).__name__}: {exc}{where}"
        ) from exc
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(path.parent))
    if not callable(getattr(module, "rule", None)):
        raise PythonRuleError(f"{path.name} does not define a function rule(event)")
    for hook in OPTIONAL_FUNCTIONS:
        if hasattr(module, hook) and not callable(getattr(module, hook)):
            raise PythonRuleError(f"{path.name}: {hook} must be a function of the event")
    return module
