"""Native rule hooks backed by a Panther module (what `detect convert` writes for Python
rules).

A converted Python rule is a native YAML whose `python:` module is a small adapter; the
adapter calls `native_hooks()`, which imports the unchanged Panther module (with its global
helpers, isolated as for Panther rules) and returns `rule`, `title`, `dedup`, `severity`,
`context`, `runbook` and, when the module has one, `destinations`, with Panther's meaning:
the module still receives a Panther event, `alert_context` becomes the native `context`,
`DEFAULT` severities and the title/dedup fallbacks behave as in Panther.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from engine.activity import Event
from engine.panther.event import PantherEvent
from engine.panther.helpers import HelperResolver
from engine.panther.loader import rule_module_name
from engine.panther.rule import Outputs, PantherRule, defined_functions


def native_hooks(
    adapter_file: str,
    module_file: str,
    *,
    rule_id: str,
    name: str,
    severity: str,
    helpers: tuple[str, ...] = (),
) -> SimpleNamespace:
    """The native hook functions for the Panther module `module_file` (relative to the
    adapter); `helpers` are extra global_helpers folders, relative to the adapter too."""
    folder = Path(adapter_file).resolve().parent
    module_path = folder / module_file
    resolver = HelperResolver([folder / h for h in helpers], {})
    module = resolver.helper_set(module_path).execute(
        module_path, rule_module_name(rule_id, module_path) + "_native"
    )
    rule = PantherRule(
        id=rule_id,
        name=name,
        severity=severity.lower(),
        path=module_path,
        module=module,
        defined=defined_functions(module),
        rule_id=rule_id,
    )
    cache: list[Any] = [None, None, None]

    def panther_event(event: Event) -> PantherEvent:
        if cache[0] is not event:
            data = event.unfrozen()  # the activity itself, read-only
            cache[0], cache[1], cache[2] = event, PantherEvent.live(data, event.created_at), None
        return cache[1]

    def outputs(event: Event) -> Outputs:
        subject = panther_event(event)
        if cache[2] is None:
            cache[2] = rule.outputs(subject, subject.raw_view(), live=True)
        return cache[2]

    def hook(field: str) -> Callable[[Event], Any]:
        return lambda event: getattr(outputs(event), field)

    hooks = SimpleNamespace(
        rule=lambda event: rule.call_rule(panther_event(event)),
        title=hook("title"),
        dedup=hook("dedup"),
        severity=hook("severity"),
        context=hook("context"),
        runbook=lambda event: outputs(event).runbook or "",
        destinations=hook("destinations") if "destinations" in rule.defined else None,
    )
    return hooks
