"""A third-party task adapter with a metric of its own (the docs/plugins.md example, installed into a throw-away
directory) appears correctly in `list adapters`, `list tasks`, results.csv, the leaderboard and `compare`: its
unit, its direction and its paired statistics come from its declaration, with no file of ours naming it."""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import pandas as pd

from test_shift_plugin import run_with

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def plugin_source() -> str:
    """The adapter module exactly as docs/plugins.md shows it."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    return next(b for b in blocks if "class CountAdapter" in b)


def install(site: Path) -> Path:
    site.mkdir(parents=True)
    (site / "vb_count_task.py").write_text(plugin_source())
    info = site / "vb_count_task-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vb-count-task\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vittle_bench.tasks]\ncount = vb_count_task:CountAdapter\n")
    return site


_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from vittle_bench.cli import main
    from vittle_bench.results_io import write_results
    from vittle_bench.runner import aggregate_cell
    from vittle_bench.schema import Sample, SampleResult
    from vittle_bench.adapters import TASK_ADAPTERS

    root = Path(sys.argv[1])
    adapter = TASK_ADAPTERS.get("count")()
    gold = [3, 1, 4, 1, 5, 2, 6, 5, 3, 5] * 3
    for model, noise in (("steady", 0), ("sloppy", 2)):
        out = root / model
        out.mkdir()
        records, cells = [], []
        for condition, shift, kind, severity, extra in (("clean", "clean", "clean", 0, 0),
                                                       ("blur@3", "blur", "image", 3, 1)):
            cell = []
            for i, g in enumerate(gold):
                raw = "I cannot count" if i == 0 else f"There are {g + (noise + extra) * (i % 3)} objects."
                sample = Sample("counting", str(i), "How many objects?", answer=str(g))
                parsed = adapter.parse(raw, sample)
                score, _ = adapter.score(sample, parsed, raw)
                cell.append(SampleResult(model, "counting", shift, kind, severity, str(i), "", "", str(g), raw,
                                         parsed.value, parsed.ok, score, condition=condition))
            records += cell
            cells += aggregate_cell(adapter, cell, seed=0)
        write_results(out / "results.csv", cells)
        (out / "samples.jsonl").write_text("".join(json.dumps(r.to_json()) + "\\n" for r in records))
    (root / "counting.yaml").write_text("task: counting\\nsource: local:q.jsonl\\nadapter: count\\n")
    print("LIST"); main(["list", "tasks", "--include-path", str(root)])
    print("ADAPTERS"); main(["list", "adapters"])
    print("BOARD"); main(["leaderboard", str(root / "steady"), str(root / "sloppy"), "--format", "csv",
                          "--layout", "long"])
    print("MARKDOWN"); main(["leaderboard", str(root / "steady"), str(root / "sloppy"), "--format", "markdown"])
    print("COMPARE"); main(["compare", str(root / "steady"), str(root / "sloppy"), "--format", "csv"])
""")


def _section(out: str, name: str, until: str | None) -> str:
    text = out.split(f"{name}\n", 1)[1]
    return text.split(f"\n{until}\n", 1)[0] if until else text


def test_plugin_adapter_metric_reaches_every_export(tmp_path):
    site = install(tmp_path / "site")
    (tmp_path / "runs").mkdir()
    out = run_with(site, _SCRIPT.replace("sys.argv[1]", repr(str(tmp_path / "runs"))))
    listing = _section(out, "LIST", "ADAPTERS")
    assert re.search(r"^counting\s+\?\s+count\s+count_error\s", listing, re.M)
    adapters = _section(out, "ADAPTERS", "BOARD")
    assert re.search(r"^count\s+count_error\s+no\s+count_error, unparseable_rate$", adapters, re.M)

    results = pd.read_csv(tmp_path / "runs" / "steady" / "results.csv").set_index(["condition", "metric"])
    row = results.loc[("clean", "count_error")]
    assert (row["unit"], row["higher_is_better"], row["primary"]) == ("objects", False, True)
    assert row["value"] == 0 and row["n"] == 29  # the unparseable answer is not counted
    assert results.loc[("clean", "unparseable_rate"), "value"] > 3

    board = pd.read_csv(io.StringIO(_section(out, "BOARD", "MARKDOWN")))
    assert set(board["metric"]) == {"count_error"} and set(board["unit"]) == {"objects"}
    sloppy = board[(board.model == "sloppy") & (board.group == "image")].iloc[0]
    assert sloppy["value"] > 0 and sloppy["ci_method"] == "cell bootstrap" and not sloppy["higher_is_better"]

    lines = [line for line in _section(out, "MARKDOWN", "COMPARE").splitlines() if line.startswith("| counting")]
    bold = {line.split("|")[2].strip(): "**" in line.split("|")[4] for line in lines}
    assert bold == {"steady": True, "sloppy": False}  # lower error is better: the steady model is bold

    compare = pd.read_csv(io.StringIO(_section(out, "COMPARE", None)))
    cells = compare[compare.scope == "cell"].set_index("condition")
    assert set(compare["unit"]) == {"objects"} and set(cells["test"]) == {"paired bootstrap"}
    assert cells.loc["clean", "diff"] > 0 and cells.loc["blur@3", "diff"] > 0  # B (sloppy) errs more
