"""`detect init [DIR]`: a starting point for a deployment's own repository.

It writes `detect.yaml` (commented, secrets as `${ENV}`), the rule schema, a `rules/` folder
with one example rule and the file its test reads, and snippets that run `detect validate`
and `detect test` from pre-commit and from CI. Existing files are never overwritten unless
`--force` is given; then nothing at all is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import engine.cli.options as cli_options
from engine.cli.options import EXIT_INVALID, EXIT_OK

SCHEMA_FILE = "rules.schema.json"
RULE_FILE = "rules/example_sso_disabled.yml"
FIXTURE_FILE = "rules/fixtures/example_sso_disabled_twice.jsonl"


def register(commands: Any) -> None:
    init = commands.add_parser(
        "init",
        help="write detect.yaml, a rules folder with an example rule, and CI snippets",
    )
    init.add_argument("dir", nargs="?", default=".", metavar="DIR", help="default: .")
    init.add_argument("--force", action="store_true", help="overwrite files that exist")
    init.set_defaults(handler=cmd_init)


def rules_setting() -> str:
    """What `rules:` names: the shipped pack by name once packs compose, else ./rules."""
    builtin = getattr(cli_options, "BUILTIN", None)
    if isinstance(builtin, str):
        return f"[{builtin}, rules]"
    return "[rules]"


def files() -> dict[str, str]:
    """Each file `detect init` writes, by its path relative to DIR."""
    from engine.resources import schema_path

    return {
        "detect.yaml": CONFIG.replace("@RULES@", rules_setting()),
        SCHEMA_FILE: schema_path().read_text(encoding="utf-8"),
        RULE_FILE: RULE,
        FIXTURE_FILE: FIXTURE,
        "snippets/pre-commit-config.yaml": PRE_COMMIT,
        "snippets/github-actions.yml": CI_JOB,
    }


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.dir)
    if target.exists() and not target.is_dir():
        print(f"error: {target} exists and is not a directory", file=sys.stderr)
        return EXIT_INVALID
    wanted = files()
    existing = [name for name in wanted if (target / name).exists()]
    if existing and not args.force:
        names = ", ".join(str(target / name) for name in existing)
        print(
            f"error: {names} already exist{'s' if len(existing) == 1 else ''}; "
            "detect init wrote nothing (--force overwrites)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    for name, text in wanted.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    print(
        "next: detect validate && detect test   (in "
        f"{target}); then set the variables detect.yaml names and run `detect check-connection`"
    )
    return EXIT_OK


CONFIG = """\
# detect configuration. Reference: the README's "Configuration" section.
# Values may use ${ENV} or ${ENV:-default}; keep secrets in the environment, never here.
# Relative paths are relative to this file.

source:
  base_url: https://api.anthropic.com
  api_key: ${ANTHROPIC_COMPLIANCE_API_KEY}   # a Compliance API key (read scope)
  organization_ids: []            # empty: every organization the key can read
  poll_interval: 60s
  lookback: 24h                   # how far back the first run reads
  overlap: 10m                    # re-read window for late-indexed activities

# Directories of rule files (YAML, Python or Panther). `detect validate` and `detect test`
# check them; `detect run` evaluates every rule found.
rules: @RULES@

state:
  path: .detect/state.db          # correlation state, outbox and checkpoint (SQLite)
quarantine: .detect/quarantine.jsonl

destinations:
  terminal:
    type: console                 # alerts on standard output; replace or add below
  # secops:
  #   type: slack
  #   url: ${SLACK_WEBHOOK_URL}
  #   min_severity: medium
  # soar:
  #   type: webhook
  #   url: https://soar.example.com/hooks/detect
  #   secret: ${DETECT_WEBHOOK_SECRET}
"""

RULE = """\
# yaml-language-server: $schema=../rules.schema.json
# An example rule: edit it, copy it, or delete it. `detect validate` checks every rule file
# against rules.schema.json; `detect test` runs the tests below.
id: example.sso.disabled
name: SSO disabled for the organization
severity: high
description: Someone turned off single sign-on; members can now sign in without the IdP.
runbook: |
  1. Ask the actor whether the change was planned.
  2. If not, turn SSO back on and reset the actor's credentials.
tags: [defense-evasion]
mitre: ["TA0005:T1562.001"]

match:                                   # every entry must hold
  type: org_sso_toggled                  # a scalar means equals
  actor.type: {not_in: [anthropic_actor]}
when: "enabled == `false` || is_enabled == `false`"   # JMESPath; both spellings occur

title: "SSO disabled by {actor.email_address}"
dedup:
  key: "{organization_id}"               # one alert per organization...
  window: 1h                             # ...per hour; later matches join it
context: [actor.email_address, actor.ip_address]

tests:
  - name: turned off by a user
    event:
      id: activity_01
      created_at: "2026-05-07T10:00:00Z"
      organization_id: org_01ABC
      type: org_sso_toggled
      enabled: false
      actor: {type: user_actor, email_address: ana@example.com, ip_address: 192.0.2.7}
    expect: true
    title: SSO disabled by ana@example.com
    dedup: org_01ABC
  - name: the other spelling of the flag
    event:
      id: activity_02
      created_at: "2026-05-07T10:00:00Z"
      organization_id: org_01ABC
      type: org_sso_toggled
      is_enabled: false
      actor: {type: user_actor, email_address: ana@example.com}
    expect: true
  - name: turned on is fine
    event:
      id: activity_03
      created_at: "2026-05-07T10:05:00Z"
      organization_id: org_01ABC
      type: org_sso_toggled
      enabled: true
      actor: {type: user_actor}
    expect: false
  - name: Anthropic staff acting for the organization
    event:
      id: activity_04
      created_at: "2026-05-07T10:05:00Z"
      organization_id: org_01ABC
      type: org_sso_toggled
      enabled: false
      actor: {type: anthropic_actor}
    expect: false
  - name: another setting turned off
    event:
      id: activity_05
      created_at: "2026-05-07T10:05:00Z"
      organization_id: org_01ABC
      type: org_magic_link_second_factor_toggled
      enabled: false
      actor: {type: user_actor}
    expect: false
  # A test may read its activities from a file (JSON Lines), looked up beside the rule,
  # then in each folder above it.
  - name: turned off twice within the hour is one alert
    events_file: fixtures/example_sso_disabled_twice.jsonl
    alerts: 1
    title: SSO disabled by ana@example.com
    dedup: org_01ABC
"""

FIXTURE = """\
{"id":"activity_11","created_at":"2026-05-07T10:00:00Z","organization_id":"org_01ABC","type":"org_sso_toggled","enabled":false,"actor":{"type":"user_actor","email_address":"ana@example.com","ip_address":"192.0.2.7"}}
{"id":"activity_12","created_at":"2026-05-07T10:20:00Z","organization_id":"org_01ABC","type":"org_sso_toggled","enabled":true,"actor":{"type":"user_actor","email_address":"ana@example.com","ip_address":"192.0.2.7"}}
{"id":"activity_13","created_at":"2026-05-07T10:40:00Z","organization_id":"org_01ABC","type":"org_sso_toggled","enabled":false,"actor":{"type":"user_actor","email_address":"bo@example.com","ip_address":"192.0.2.8"}}
"""

PRE_COMMIT = """\
# Add to .pre-commit-config.yaml: checks the rules and runs their tests before each commit.
# With detect installed in the environment that runs pre-commit (language: system):
repos:
  - repo: local
    hooks:
      - id: detect-validate
        name: detect validate
        entry: detect validate
        language: system
        pass_filenames: false
        files: ^rules/
      - id: detect-test
        name: detect test
        entry: detect test
        language: system
        pass_filenames: false
        files: ^rules/
# Or, from a clone of detect's repository, its hooks (.pre-commit-hooks.yaml) install
# detect themselves:
#  - repo: <the URL of detect's repository>
#    rev: <a tag>
#    hooks:
#      - id: detect-validate
#      - id: detect-test
"""

CI_JOB = """\
# A CI job (GitHub Actions; copy to .github/workflows/rules.yml): every push checks the
# rules, runs their tests, and fails when the tests miss more than 10% of small changes
# to the rules (mutation testing).
name: detection rules
on: [push, pull_request]
jobs:
  rules:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      # The detect wheel (built with `pip wheel . --no-deps` in detect's repository), by
      # path or URL; add [panther] when the rules include Panther rules.
      - run: pip install "${DETECT_WHEEL:-detect}"
        env:
          DETECT_WHEEL: ${{ vars.DETECT_WHEEL }}
      - run: detect validate rules
      - run: detect test rules
      - run: detect test --mutate rules --min-score 90
"""
