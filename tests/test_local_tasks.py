"""`local:` tasks: the documented JSONL example loads as documented, a multiple-choice answer written as the
option's text becomes its letter (anything else is that row's error), and a question id given twice stops the
run with one line naming the file and both lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from vittle_bench.config import ConfigError
from vittle_bench.data.local import answer_letter, load_local_jsonl

DOCS = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"


def documented_example() -> tuple[str, str]:
    """The YAML and JSONL of docs/datasets.md's `local:` example."""
    section = DOCS.read_text().split("## Your own questions: `local:`", 1)[1].split("\n## ", 1)[0]
    (yaml_text,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    (jsonl_text,) = re.findall(r"```jsonl\n(.*?)```", section, re.S)
    return yaml_text, jsonl_text


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_documented_example_loads_as_documented(tmp_path):
    from vittle_bench.config import load_task_specs
    from vittle_bench.data.sources import load_samples

    yaml_text, jsonl_text = documented_example()
    root = tmp_path / "my_tasks"
    (root / "images").mkdir(parents=True)
    (root / "my_shapes.yaml").write_text(yaml_text)
    (root / "my_shapes.jsonl").write_text(jsonl_text)
    Image.new("RGB", (64, 48), "white").save(root / "images" / "circle.jpg")
    Image.new("RGBA", (64, 48), "white").save(root / "images" / "pair.png")
    spec = load_task_specs([root])["my_shapes"]
    samples = list(load_samples(spec, tmp_path / "cache"))
    assert [s.load_error for s in samples] == [None, None, None]
    assert [s.answer for s in samples] == ["B", "A", "B"]  # "blue" -> B, "A" kept, "b" -> B
    assert [len(s.images) for s in samples] == [1, 1, 2] and all(i.mode == "RGB" for s in samples for i in s.images)
    assert samples[0].choices == ("red", "blue", "green") and samples[0].category == "colour"
    assert samples[2].context == "The pictures are given in order."


@pytest.mark.parametrize("answer, choices, expected", [
    ("B", ["red", "blue"], "B"),
    (" b ", ["red", "blue"], "B"),
    ("blue", ["red", "blue"], "B"),
    ("  Blue ", ["red", "blue"], "B"),
    (3, ["2", "3", "4"], "B"),  # a number is read as text
    ("C", ["A", "B", "C"], "C"),  # the letter and the text agree
])
def test_an_answer_given_as_letter_or_option_text_becomes_the_letter(tmp_path, answer, choices, expected):
    rows = [{"question_id": "q", "question": "Which?", "choices": choices, "answer": answer}]
    (sample,) = load_local_jsonl("own", write_rows(tmp_path / "own.jsonl", rows))
    assert sample.load_error is None and sample.answer == expected


@pytest.mark.parametrize("answer, choices, message", [
    ("purple", ["red", "blue"], "'purple' is neither an option letter (A-B) nor the text of one of the 2 choices"),
    ("C", ["red", "blue"], "'C' is neither an option letter (A-B)"),
    ("blue", ["blue", "Blue "], "'blue' is the text of several options (A and B)"),
    ("A", ["B", "A"], "'A' is ambiguous: it is option A's letter and the text of option B"),
])
def test_an_answer_naming_no_single_option_is_that_rows_error(tmp_path, answer, choices, message):
    rows = [{"question_id": "bad", "question": "Which?", "choices": choices, "answer": answer},
            {"question_id": "good", "question": "Which?", "choices": ["x", "y"], "answer": "y"}]
    bad, good = load_local_jsonl("own", write_rows(tmp_path / "own.jsonl", rows))
    assert bad.sample_id == "bad" and message in (bad.load_error or "")
    assert good.load_error is None and good.answer == "B"
    with pytest.raises(ValueError, match=re.escape(message)):
        answer_letter(answer, choices)


@pytest.mark.parametrize("row, message", [
    ({"question_id": "q"}, "missing column(s) ['question']"),
    ({"question_id": "q", "question": "?", "choices": "red, blue", "answer": "A"}, "`choices` must be a list"),
    ({"question_id": "q", "question": "?", "image": {"path": "x.png"}}, "`image` must be a string or a list"),
    ({"question_id": "q", "question": "?", "answer": ["yes"]}, "`answer` must be a string"),
    ({"question_id": "q", "question": "?", "image": "missing.png"}, "missing.png"),
])
def test_a_malformed_row_is_that_rows_error(tmp_path, row, message):
    (sample,) = load_local_jsonl("own", write_rows(tmp_path / "own.jsonl", [row]))
    assert sample.sample_id == "q" and message in (sample.load_error or "")


def test_open_answers_and_pope_answers_are_not_mapped(tmp_path):
    rows = [{"question_id": 1, "question": "Is there a dog?", "answer": "yes"},
            {"question_id": 2, "question": "How many?", "answer": 3, "context": ["line one", "line two"]}]
    first, second = load_local_jsonl("own", write_rows(tmp_path / "own.jsonl", rows))
    assert (first.sample_id, first.answer, first.choices) == ("1", "yes", ())
    assert (second.answer, second.context) == ("3", "line one\nline two")


def test_a_duplicate_question_id_is_one_line_naming_the_file_and_both_lines(tmp_path):
    path = tmp_path / "own.jsonl"
    path.write_text('{"question_id": "a", "question": "?"}\n\n{"question_id": 7, "question": "?"}\n'
                    '{"question_id": "7", "question": "?"}\n')
    with pytest.raises(ConfigError) as caught:
        load_local_jsonl("own", path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "'7' is on lines 3 and 4" in message


def test_a_line_that_is_not_an_object_stops_the_load(tmp_path):
    path = tmp_path / "own.jsonl"
    path.write_text('{"question_id": "a", "question": "?"}\n["a", "list"]\n')
    with pytest.raises(ConfigError, match=r"own.jsonl:2 is not a JSON object"):
        load_local_jsonl("own", path)


def test_a_duplicate_id_stops_a_run_with_exit_2(tmp_path, capsys):
    from vittle_bench.cli import main

    write_rows(tmp_path / "own.jsonl", [{"question_id": "q", "question": "?", "answer": "yes"}] * 2)
    (tmp_path / "own.yaml").write_text("task: own\nsource: local:own.jsonl\nadapter: pope\n")
    code = main(["run", "--model", "builtin:tiny-llava", "--tasks", "own", "--include-path", str(tmp_path),
                 "--no-cache", "--output", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "'q' is on lines 1 and 2" in err[0], err


def test_a_source_scheme_is_a_registered_sample_source(tmp_path, capsys):
    """Sources are served by registered schemes; an unknown one is one line naming every form that works."""
    from vittle_bench.cli import main
    from vittle_bench.config import load_task_specs
    from vittle_bench.data.sources import SAMPLE_SOURCES, task_size

    assert {"builtin", "hf", "disk", "local"} <= set(SAMPLE_SOURCES)
    assert task_size(load_task_specs()["shapes_mc"]) == "200"
    (tmp_path / "ftp_task.yaml").write_text("task: ftp_task\nsource: ftp:example.org/q.jsonl\nadapter: closed_form\n")
    assert main(["run", "--model", "builtin:tiny-llava", "--tasks", "ftp_task", "--include-path", str(tmp_path),
                 "--output", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vittle-bench: error: task ftp_task: source 'ftp:example.org/q.jsonl' is not supported "
                   "(supported: builtin:shapes, hf:ORG/NAME or disk:PATH, local:FILE.jsonl)"]
