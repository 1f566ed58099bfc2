"""The labels file: one JSON line per attack instance, the ground truth for noise studies.

```json
{"instance": "atk-00001", "kind": "admin_account_takeover", "organization_id": "org_…",
 "activity_ids": ["activity_…", …], "key_activity_id": "activity_…",
 "started_at": "2026-05-06T03:12:44.120331Z", "description": "…"}
```

- `activity_ids`: every activity the attacker produced that is in the feed, in time order.
- `key_activity_id`: the earliest single activity at which a defender should know (see
  `attacks` for each kind); null only when the feed ended before it.
- `organization_id`: the attacked org, null for the org-less Compliance API abuse.
- `started_at`: the `created_at` of the first of `activity_ids`.

An instance cut by the end of the feed keeps what was written; one with nothing written
is left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.orgsim.attacks import Instance
from engine.orgsim.wire import rfc3339


def label_records(instances: Iterable[Instance], written: set[str]) -> list[dict[str, Any]]:
    """The label of each instance, restricted to the activities that were `written`."""
    records = []
    for inst in instances:
        kept = sorted(
            ((t, a["id"]) for t, a in inst.activities if a["id"] in written),
            key=lambda pair: pair[0],
        )
        if not kept:
            continue
        key = inst.key["id"] if inst.key is not None and inst.key["id"] in written else None
        records.append(
            {
                "instance": inst.instance,
                "kind": inst.kind,
                "organization_id": inst.org.id if inst.org is not None else None,
                "activity_ids": [ident for _, ident in kept],
                "key_activity_id": key,
                "started_at": rfc3339(kept[0][0]),
                "description": inst.description,
            }
        )
    return records


def write_labels(path: str | Path, records: list[dict[str, Any]]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
