"""Property-based tests: the condition syntax, the task-file loader and the three answer parsers, on generated
input. Valid input gives the documented result; anything else gives a one-line user error (or, for a parser,
an unparseable answer), never another exception."""

from __future__ import annotations

import math
import string
import tempfile
from pathlib import Path

import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from vittle_bench.adapters.closed_form import parse_choice
from vittle_bench.adapters.pope import parse_pope_answer
from vittle_bench.config import ConfigError, load_task_specs
from vittle_bench.judges.openai import parse_score_pair
from vittle_bench.registry import UnknownNameError
from vittle_bench.shifts import SHIFTS, parse_condition

from test_metrics_and_parsers import official_pope_prediction

FAST = settings(max_examples=100, deadline=None, database=None)

# --- the condition syntax: `clean`, `name@sev`, `image@sev+text@sev`, `domain:NAME` -----------------------

_names = st.deferred(lambda: st.sampled_from(SHIFTS.names()))
_junk = st.text(alphabet=string.ascii_letters + string.digits + "_-@+:. \t٣²", max_size=8)
_severities = st.one_of(st.integers(-1, 9).map(str), st.sampled_from(["", "03", "٣", "²", "1.5", " 2", "x"]), _junk)
_single = st.one_of(st.builds(lambda n, s: f"{n}@{s}", _names, _severities), _junk)
_conditions = st.one_of(
    _single,
    st.builds(lambda a, b, gap: f"{a}{gap}+{gap}{b}", _single, _single, st.sampled_from(["", " "])),
    st.builds(lambda a, b, c: f"{a}+{b}+{c}", _single, _single, _single),
    st.builds(lambda name: f"domain:{name}", _junk),
    st.sampled_from(["clean", " clean ", "clean@1", "domain:", "", "+", "@", "@3"]),
    st.text(max_size=12),
)


def expected_label(text: str) -> str | None:
    """The label a condition has by the documented syntax, or None when it is not a valid condition."""
    text = text.strip()
    if text == "clean":
        return "clean"
    if text.startswith("domain:"):
        name = text.removeprefix("domain:")
        return text if name and not set(name) & set("@+, ") else None
    parts = [p.strip() for p in text.split("+")]
    singles = []
    for part in parts:
        name, _, severity = part.partition("@")
        if name not in SHIFTS.names() or not (severity.isascii() and severity.isdigit()):
            return None
        shift = SHIFTS.get(name)(1)
        if int(severity) not in shift.severities:
            return None
        singles.append((shift.kind, f"{name}@{int(severity)}"))
    if len(singles) == 1:
        return singles[0][1]
    if len(singles) != 2 or {kind for kind, _ in singles} != {"image", "text"}:
        return None
    return "+".join(label for _, label in sorted(singles))  # "image" < "text": the image shift first


@FAST
@given(_conditions)
def test_conditions_parse_to_their_label_or_raise_a_user_error(text):
    expected = expected_label(text)
    try:
        condition = parse_condition(text)
    except (ValueError, UnknownNameError) as exc:  # ConfigError is a ValueError
        event("refused")
        assert expected is None, (text, exc)
        assert str(exc).strip() and "\n" not in str(exc)
        return
    event("parsed")
    assert condition.label == expected, text
    assert parse_condition(condition.label).label == condition.label


# --- the task-file loader ------------------------------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                       max_leaves=6)
_keys = st.sampled_from(["task", "source", "adapter", "subset", "split", "groups", "adapter_args", "columns",
                         "revision", "description", "override", "domains", "suite", "conditions", "bogus"])
_plausible = st.fixed_dictionaries({"task": st.one_of(st.text(string.ascii_lowercase + "_", min_size=1, max_size=8),
                                                      st.sampled_from(["shapes_mc", "a,b", " x"]), _scalars),
                                    "source": st.sampled_from(["builtin:shapes", "local:q.jsonl", ""]),
                                    "adapter": st.sampled_from(["pope", "closed_form", "nope"])})
_mappings = st.builds(lambda base, extra: {**base, **extra}, _plausible, st.dictionaries(_keys, _values, max_size=4))
_documents = st.one_of(
    _mappings.map(lambda m: yaml.safe_dump(m, allow_unicode=True).encode()),
    st.dictionaries(st.one_of(_keys, st.integers()), _values, max_size=5).map(lambda m: yaml.safe_dump(m).encode()),
    st.text(max_size=80).map(str.encode),
    st.binary(max_size=60),
    st.sampled_from([b"task: [a\n", b"task: x\n  source: y\n", b"- a\n- b\n", b"", b"task: x\x00\n",
                     b"task: x\nsource: 2001-13-45\nadapter: pope\n", b"task: !!python/object:os.system x\n"]),
)


@settings(max_examples=50, deadline=None, database=None)
@given(_documents, st.sampled_from(["own.yaml", "own.yml"]))
def test_task_files_load_or_raise_a_config_error(document, filename):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / filename).write_bytes(document)
        try:
            specs = load_task_specs([Path(tmp)])
        except ConfigError as exc:
            event("refused")
            assert str(exc).startswith(str(Path(tmp) / filename)) and "\n" not in str(exc), exc
            return
    event("loaded")
    for spec in specs.values():
        assert isinstance(spec.task, str) and isinstance(spec.source, str) and isinstance(spec.adapter, str)
        assert all(isinstance(g, str) for g in spec.groups) and isinstance(spec.adapter_args, dict)


# --- the answer parsers --------------------------------------------------------------------------------------

_answers = st.one_of(st.text(max_size=40),
                     st.lists(st.sampled_from(["No", "no", "not", "Not", "Yes", "yes", ".", ",", " ", "\n", "NO",
                                               "there", "is", "a", "dog", "**B**", "(A)", "Answer:", "option",
                                               "C.", "8", "7", "10", "-1", "1e1", "nan", "inf"]),
                              max_size=8).map("".join))


@FAST
@given(_answers)
def test_pope_parser_is_the_official_rule_on_every_non_blank_answer(raw):
    parsed = parse_pope_answer(raw)
    assert (parsed.value is None) == (not parsed.ok)
    if raw.strip():
        assert parsed.ok and parsed.value == official_pope_prediction(raw)
    else:
        assert not parsed.ok


@FAST
@given(_answers, st.lists(st.text(max_size=10), max_size=8))
def test_choice_parser_never_raises_and_answers_a_valid_letter(raw, options):
    parsed = parse_choice(raw, tuple(options))
    assert (parsed.value is None) == (not parsed.ok)
    assert parsed.value is None or parsed.value in string.ascii_uppercase[:len(options)]


_number = st.one_of(st.integers(-20, 120).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                    st.sampled_from(["8/10", "nan", "-0", "1_0", "٣", "10.0", "1e1", ""]))


@FAST
@given(st.one_of(st.text(max_size=30),
                 st.builds(lambda a, sep, b, rest: f"{a}{sep}{b}{rest}", _number,
                           st.sampled_from([" ", ",", ", ", "  "]), _number,
                           st.sampled_from(["", "\nBecause ...", " points", "\n"]))))
def test_score_pair_parser_reads_two_scores_within_the_scale_or_nothing(review):
    scores = parse_score_pair(review)
    assert scores is None or (len(scores) == 2 and all(math.isfinite(s) and 0 <= s <= 10 for s in scores))
