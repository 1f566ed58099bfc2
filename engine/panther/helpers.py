"""Global helpers for Panther rules, imported in isolation.

Panther rules import shared code by module name (`from panther_base_helpers import
deep_get`) from a `global_helpers/` folder. Putting that folder on `sys.path` would let a
helper called `engine`, `yaml` or `rule` replace the engine's own modules (or be replaced
by them), and two rules directories with different helpers of the same name would shadow
each other. So helper modules are never on `sys.path`: every Panther module (rule or
helper) is executed with its own `__builtins__`, whose `__import__` serves the names of
its helper set first, from private `sys.modules` entries, and hands every other import to
Python unchanged.

Which helpers a rule sees: the folders given with `--helpers`, the nearest
`global_helpers/` folder above the rule file (where panther-analysis keeps it), and the
`AnalysisType: global` specs of the loaded files (a `GlobalID` may name a module
differently from its file). A module name defined twice with different files is an error,
never a silent choice.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import importlib
import importlib.util
import io
import itertools
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any

HELPERS_FOLDER = "global_helpers"

# Import names whose PyPI package is called something else.
_PACKAGES = {
    "dateutil": "python-dateutil",
    "yaml": "PyYAML",
    "jsonpath_ng": "jsonpath-ng",
    "nested_lookup": "nested-lookup",
    "dns": "dnspython",
    "Crypto": "pycryptodome",
}

# What detect's `[panther]` extra installs (pyproject.toml), by import name: the hint
# names the extra, the one line that brings every package panther-analysis's helpers use.
_PANTHER_EXTRA = frozenset(("dateutil",))

_counter = itertools.count(1)


class HelperError(ValueError):
    """A helper set that cannot be used (two modules of one name), or an import that
    failed; the message says what to change."""


class _RuleOutput:
    """Where `print` in a Panther module writes: stderr, or a test's capture buffer.
    (stdout is kept for the command's own output, e.g. `replay --format jsonl`.)"""

    stream: IO[str] | None = None


_OUTPUT = _RuleOutput()


def _rule_print(*args: Any, **kwargs: Any) -> None:
    if kwargs.get("file") is None:
        kwargs["file"] = _OUTPUT.stream or sys.stderr
    builtins.print(*args, **kwargs)


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Collect what Panther modules print while the block runs."""
    buffer = io.StringIO()
    previous = _OUTPUT.stream
    _OUTPUT.stream = buffer
    try:
        yield buffer
    finally:
        _OUTPUT.stream = previous


def _scan_folder(folder: Path, specs: Mapping[Path, Mapping[str, Any]]) -> dict[str, Path]:
    """Module name -> file for one helpers folder: its `.py` files and packages, and the
    names its `AnalysisType: global` specs declare."""
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.suffix == ".py" and entry.is_file():
            found[entry.stem] = entry.resolve()
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            found[entry.name] = entry.resolve()
    for spec_path, spec in specs.items():
        if spec_path.parent == folder.resolve():
            target = (spec_path.parent / str(spec.get("Filename", ""))).resolve()
            if target.is_file():
                found[str(spec["GlobalID"])] = target
    return found


def nearest_helpers_folder(path: Path) -> Path | None:
    """The `global_helpers/` folder of the nearest directory above `path` that has one."""
    start = path.resolve().parent
    for folder in (start, *start.parents):
        if folder.name == HELPERS_FOLDER:
            return folder
        candidate = folder / HELPERS_FOLDER
        if candidate.is_dir():
            return candidate
    return None


@dataclass
class HelperSet:
    """The helper modules one group of rules may import, loaded once and shared by them."""

    files: dict[str, Path]
    folders: tuple[Path, ...]
    prefix: str = ""
    modules: dict[str, ModuleType] = field(default_factory=dict)
    builtins: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        material = "\x1f".join(f"{n}={p}" for n, p in sorted(self.files.items()))
        digest = hashlib.sha1(material.encode()).hexdigest()[:10]
        self.prefix = f"detect_panther_helpers_{digest}_{next(_counter)}"
        package = ModuleType(self.prefix)
        package.__path__ = []  # a namespace for the helper modules, nothing importable
        sys.modules[self.prefix] = package
        self.builtins = dict(builtins.__dict__)
        self.builtins["__import__"] = self._import
        self.builtins["print"] = _rule_print

    def _import(
        self,
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Iterable[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        if level == 0:
            top, dot, _ = name.partition(".")
            if top in self.files:
                module = self.load(top)
                if not dot:
                    return module
                submodule = importlib.import_module(f"{self.prefix}.{name}")
                return submodule if fromlist else module
        return builtins.__import__(name, globals, locals, fromlist or (), level)

    def load(self, name: str) -> ModuleType:
        """The helper module `name`, executed on first use."""
        module = self.modules.get(name)
        if module is not None:
            return module
        path = self.files[name]
        full_name = f"{self.prefix}.{name}"
        if path.is_dir():
            spec = importlib.util.spec_from_file_location(
                full_name, path / "__init__.py", submodule_search_locations=[str(path)]
            )
        else:
            spec = importlib.util.spec_from_file_location(full_name, path)
        if spec is None or spec.loader is None:
            raise HelperError(f"global helper {path.name} cannot be imported as a module")
        module = importlib.util.module_from_spec(spec)
        module.__dict__["__builtins__"] = self.builtins
        self.modules[name] = module
        sys.modules[full_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del self.modules[name]
            sys.modules.pop(full_name, None)
            raise
        return module

    def execute(self, path: Path, name: str) -> ModuleType:
        """Import a rule module from `path` under the private `name`, with this set's
        helpers; raises what the module raised."""
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise HelperError(f"{path.name} cannot be imported as a module")
        module = importlib.util.module_from_spec(spec)
        module.__dict__["__builtins__"] = self.builtins
        sys.modules[name] = module  # dataclasses and friends look their module up here
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module


class HelperResolver:
    """Builds (and caches) the helper set of each rule file."""

    def __init__(self, explicit: Iterable[Path], specs: Mapping[Path, Mapping[str, Any]]):
        self.explicit = tuple(Path(p).resolve() for p in explicit)
        self.specs = {Path(p).resolve(): s for p, s in specs.items()}
        self._sets: dict[tuple[Path, ...], HelperSet] = {}
        self._scans: dict[Path, dict[str, Path]] = {}

    def missing_folders(self) -> list[Path]:
        return [p for p in self.explicit if not p.is_dir()]

    def folders_for(self, rule_file: Path) -> tuple[Path, ...]:
        folders = [p for p in self.explicit if p.is_dir()]
        nearest = nearest_helpers_folder(rule_file)
        if nearest is not None and nearest.resolve() not in folders:
            folders.append(nearest.resolve())
        # Specs kept outside a global_helpers/ folder serve every rule of the load; those
        # inside one serve the rules below it (found above, as the nearest folder).
        for spec_path in self.specs:
            folder = spec_path.parent
            if folder.name != HELPERS_FOLDER and folder not in folders:
                folders.append(folder)
        return tuple(folders)

    def _scan(self, folder: Path) -> dict[str, Path]:
        scan = self._scans.get(folder)
        if scan is None:
            if folder.name == HELPERS_FOLDER or folder in self.explicit:
                scan = _scan_folder(folder, self.specs)
            else:
                # A folder holding global specs outside a global_helpers/ folder: only the
                # modules its specs declare, not every Python file beside them.
                scan = {
                    str(spec["GlobalID"]): (path.parent / str(spec.get("Filename", ""))).resolve()
                    for path, spec in self.specs.items()
                    if path.parent == folder
                }
            self._scans[folder] = scan
        return scan

    def helper_set(self, rule_file: Path) -> HelperSet:
        """The helpers `rule_file` may import; raises `HelperError` naming both files when
        two folders define one module name differently."""
        folders = self.folders_for(rule_file)
        cached = self._sets.get(folders)
        if cached is not None:
            return cached
        files: dict[str, Path] = {}
        for folder in folders:
            for name, path in self._scan(folder).items():
                other = files.get(name)
                if other is not None and other != path:
                    raise HelperError(
                        f"global helper {name!r} is defined twice: {other} and {path};"
                        " rename one (a rule would otherwise get whichever came first)"
                    )
                files[name] = path
        helper_set = self._sets[folders] = HelperSet(files, folders)
        return helper_set


def describe_import_error(exc: BaseException, module_file: Path, helper_set: HelperSet) -> str:
    """One line saying which file failed to import what, and how to fix it."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    # The last frame in the user's code: not this module, not importlib's machinery.
    own = str(Path(__file__).resolve())
    frames = [f for f in frames if not f.filename.startswith("<frozen") and f.filename != own]
    frame = frames[-1] if frames else None
    where = module_file.name
    if frame is not None:
        where = f"{Path(frame.filename).name} line {frame.lineno}"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        missing = exc.name
        top = missing.partition(".")[0]
        helper_files = {str(p) for p in helper_set.files.values()}
        in_helper = frame is not None and str(Path(frame.filename).resolve()) in helper_files
        if top in _PACKAGES or in_helper:
            package = _PACKAGES.get(top, top)
            extra = ", or install detect with its [panther] extra" if top in _PANTHER_EXTRA else ""
            return (
                f"{where}: imports {missing!r}, a third-party package that is not installed"
                f" in the environment detect runs in (pip install {package}{extra})"
            )
        searched = ", ".join(str(f) for f in helper_set.folders) or "none found"
        return (
            f"{where}: imports {missing!r}, which is neither a global helper (helper folders:"
            f" {searched}) nor an installed package; point --helpers at the folder that"
            f" holds {missing}.py, or install the package"
        )
    return f"{where}: {type(exc).__name__}: {exc}"
