"""Deterministic, realistic Compliance API activity feeds.

The demo, the rules' fixtures and the benchmarks all need activities that look like what the
Compliance API really sends (the wire shape of `GET /v1/compliance/activities`, its type mix,
its actor union), with attacks hidden in them that the bundled rules must find. Real feeds
cannot be shipped, so this module makes them: the same `(count, seed, start, attacks)` always
gives the same activities, byte for byte, so a fixture can be regenerated and diffed.

Regenerate the bundled demo feed with:

    python -m engine.feedgen --count 400 --seed 7 --out fixtures/demo/feed.jsonl

and a benchmark file (gzip when the name ends in .gz) with, for example:

    python -m engine.feedgen --count 1000000 --seed 1 --out /tmp/feed-1m.jsonl.gz

What the feed holds:

- Three organizations of one parent (`Example Corp` and a research org on example.com,
  `Example Labs` on example.net). Sign-ins, sign-outs and Compliance API calls carry null
  `organization_id`/`organization_uuid`, as the API does.
- A fixed roster of four admins (the ones `rules/lists/admins.yml` names, on office and VPN
  addresses that `rules/lists/trusted_networks.yml` trusts) and a seeded crowd of users, each
  with a stable email, `user_id`, one or two stable addresses from the documentation ranges
  and a user agent. Heavy users exist: activity per user follows a long tail.
- The real mix: mostly chat and file views, chat creation, SSO sign-ins (initiated, then
  succeeded a few seconds later), Compliance API reads by the two keys
  `rules/lists/compliance_keys.yml` knows, some project and file work, rare admin actions
  that look like attacks but are benign (invites to corporate domains, members joining,
  keys created by people, service keys created by the system, harmless settings changes),
  and one benign look-alike of each attack the rules count: a single session revoked, a
  step-up prompt cancelled once and then passed, a stale chat link denied once or twice,
  trusted devices enrolled (admins from the office), a workspace created by a person.
- Admins sign in from their office address as the feed begins, as they would have before
  any deployment's history: a feed that starts cold must not make an admin's first office
  sign-in look new because their VPN address happened to show up first.
- Activity follows office hours (UTC) and is thin at weekends; inter-arrival times are
  exponential, so bursts happen the way they do in real feeds.
- In every feed, once per round: an activity of a type the API reference does not list, one
  from an actor type it does not list, and one known type with an extra field: new types
  and fields appear without notice and must flow through the engine.
- With `attacks=True`, the scenarios of `SCENARIOS` (see `_Scenarios`), spread through the
  feed, repeated with fresh attacker addresses once per 50,000 activities so benchmark
  files keep producing alerts from start to end. They tell one story per round: an admin
  account taken over, a member promoted and minting a key, data exported and scraped,
  defenses switched off. A feed too small for all of them keeps those that fit in a third
  of its activities (the 400-activity demo drops none).

Everything is plain stdlib and cheap per activity (a few dict builds, one random id and a
cached timestamp prefix), because the same code writes million-activity benchmark files.
"""

from engine.feedgen.roster import DEFAULT_START
from engine.feedgen.scenarios import SCENARIOS
from engine.feedgen.writer import generate, main, write_jsonl

__all__ = ["DEFAULT_START", "SCENARIOS", "generate", "main", "write_jsonl"]
