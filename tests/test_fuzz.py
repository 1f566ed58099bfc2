"""Issue 18, "Nothing silent": property tests. Whatever the input, the activity reader
accepts or quarantines with a reason, the rule loader reports problems, and a template
renders text; none of them raises. Deterministic (`derandomize`) and kept to a few
seconds."""

from __future__ import annotations

import json
import string
from pathlib import Path

import jmespath
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.activity import ActivityRecord, describe_validation_error, parse_activity
from engine.detection.functions import NamedLists, make_options
from engine.detection.loader import check_rules
from engine.detection.operators import MatchError
from engine.detection.templates import compile_template
from engine.errors import InputError
from engine.sources.files import Rejected, read_source

FAST = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
timestamps = st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.text(alphabet="0123456789-T:.Z+ ", max_size=32),
    st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "2026-05-07T10:00:00Z"]),
)
activity_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=8) | json_values,
        "type": st.text(max_size=8) | json_values,
        "created_at": timestamps | json_values,
        "actor": st.fixed_dictionaries(
            {}, optional={"type": st.text(max_size=8) | json_values, "ip_address": json_values}
        )
        | json_values,
        "organization_id": st.text(max_size=8) | json_values,
    },
)


@FAST
@given(st.one_of(json_values, activity_like))
def test_any_decoded_value_is_an_activity_or_a_reason(value):
    try:
        record = parse_activity(value)
    except (ValidationError, TypeError) as exc:
        assert describe_validation_error(exc)
        return
    assert isinstance(record, ActivityRecord) and record.id and record.type


@FAST
@given(st.lists(st.binary(max_size=80) | activity_like.map(json.dumps).map(str.encode), max_size=6))
def test_any_bytes_read_as_records_or_rejections(tmp_path_factory, chunks):
    path: Path = tmp_path_factory.mktemp("fuzz") / "feed.jsonl"
    path.write_bytes(b"\n".join(chunks))
    try:
        records = list(read_source(str(path)))
    except InputError as exc:  # the documented refusal of a whole input (not UTF-8)
        assert str(exc)
        return
    for record in records:
        if isinstance(record, Rejected):
            assert record.reason and json.dumps(record.to_dict())
        else:
            assert isinstance(record, ActivityRecord)


RULE_KEYS = [
    "id", "name", "severity", "enabled", "match", "when", "python", "title", "dedup",
    "threshold", "new_value", "sequence", "learn", "alert", "context", "destinations",
    "tests", "time_budget", "log_types", "tags",
]  # fmt: skip
rule_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "{actor.email_address}",
            "type == 'login'",
            "((((a))))",
            "{unclosed",
            {"type": "login", "actor.ip_address": {"cidr": "10.0.0.0/8"}},
            {"type": {"regex": "(?=x)"}},
            {"type": {"in_list": "missing"}},
            {"count": 3, "window": "10m"},
            {"of": "actor.ip_address", "per": "actor.user_id"},
            {"within": "1h", "steps": [{"match": {"type": "a"}, "by": "id"}]},
            {"key": "{id}", "window": "1h"},
            [{"name": "t", "event": {"id": "a"}, "expect": True}],
            "critical",
            "1h",
            0.5,
        ]
    ),
)
documents = st.one_of(
    st.dictionaries(st.sampled_from(RULE_KEYS), rule_values, max_size=8),
    json_values,
)


@FAST
@given(documents)
def test_any_rule_document_gives_problems_never_an_exception(tmp_path_factory, document):
    folder = tmp_path_factory.mktemp("rules")
    text = yaml.safe_dump(document, allow_unicode=True) if document is not None else ""
    (folder / "rule.yml").write_text(text, encoding="utf-8")
    ruleset, problems = check_rules([folder])
    for problem in problems:
        assert problem.message
    assert len(ruleset.rules) + len(ruleset.skipped) + len(problems) >= 1 or document is None


@FAST
@given(st.text(alphabet=string.printable, max_size=40))
def test_any_yaml_text_gives_problems_never_an_exception(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rule.yml").write_text(text, encoding="utf-8")
    _, problems = check_rules([folder])
    assert all(problem.message for problem in problems)


names = st.sampled_from(["a", "b", "actor", "ip_address", "0", "items"])
paths = st.recursive(
    names,
    lambda inner: st.one_of(
        st.tuples(inner, names).map(".".join),
        st.tuples(inner, st.integers(-3, 3)).map(lambda p: f"{p[0]}[{p[1]}]"),
        inner.map(lambda p: f"{p}[*]"),
        inner.map(lambda p: f"{p}[]"),
        st.tuples(inner, inner).map(lambda p: f"{p[0]} || {p[1]}"),
        st.tuples(inner, inner).map(lambda p: f"[{p[0]}, {p[1]}]"),
        inner.map(lambda p: f"{p}.*"),
    ),
    max_leaves=5,
)
OPTIONS = make_options(NamedLists())


@FAST
@given(st.lists(paths | st.text(alphabet="ab {}", max_size=6), max_size=3), json_values)
def test_a_template_renders_any_data_as_text(parts, data):
    template = "".join(p if "{" in p or "}" in p else "{" + p + "}" for p in parts) + " tail"
    try:
        render = compile_template(template, OPTIONS)
    except (MatchError, jmespath.exceptions.JMESPathError):
        return  # refused at validate
    for value in (data, {"a": data, "actor": {"ip_address": data}}):
        text = render(value if isinstance(value, dict) else {"a": value})
        assert isinstance(text, str)
