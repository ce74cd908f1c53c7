"""`vittle-bench leaderboard` and `vittle-bench compare` on hand-made run directories (no model): merged
paper-style tables, intervals, every output format, paired comparisons and plots."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from importlib.resources import files
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from vittle_bench.cli import main
from vittle_bench.leaderboard import LONG_COLUMNS, aggregate, build_table, load_results, load_samples, widen
from vittle_bench.render import render

from synthetic_runs import write_run

ERRORS = {("syn_mc", "keyboard", 3): 2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return (write_run(root / "base", "base", skill=0.62, seed=1, errors=ERRORS),
            write_run(root / "vittle", "vittle", skill=0.75, seed=2))


def _results(*dirs) -> pd.DataFrame:
    return pd.concat([pd.read_csv(d / "results.csv") for d in dirs], ignore_index=True)


def test_wide_table_merges_runs_and_averages_each_shift_kind(runs):
    table = build_table(list(runs))
    assert list(table.columns[:3]) == ["task", "model", "metric"]
    assert len(table) == 6 and set(table["model"]) == {"base", "vittle"}
    assert [c for c in table.columns if c in ("clean", "image", "text", "joint")] == ["clean", "image", "text", "joint"]
    results = _results(*runs)
    for row in table.itertuples():
        cells = results[(results.task == row.task) & (results.model == row.model) & (results.metric == row.metric)]
        for kind in ("clean", "image", "text", "joint"):  # the leaderboard prints what results.csv holds
            expected = cells.loc[cells.shift_kind == kind, "value"].mean()
            assert getattr(row, kind) == pytest.approx(expected)
    assert dict(zip(table["task"] + "/" + table["model"], table["n_errors"])) == {
        "syn_mc/base": 2, "syn_mc/vittle": 0, "syn_open/base": 0, "syn_open/vittle": 0,
        "syn_pope/base": 0, "syn_pope/vittle": 0}
    assert set(table.loc[table.task == "syn_open", "metric"]) == {"relative_score_overlap"}


def test_intervals_single_cells_reuse_results_csv_and_kind_averages_are_paired(runs):
    table = build_table(list(runs)).set_index(["task", "model"])
    results = _results(*runs)
    for (task, model), row in table.iterrows():
        clean = results[(results.task == task) & (results.model == model) & (results.metric == row["metric"]) &
                        (results["shift"] == "clean")].iloc[0]
        assert row["clean ci_low"] == pytest.approx(clean.ci_low)
        assert row["joint ci_high"] > row["joint"] > row["joint ci_low"]  # joint: one condition, from results.csv
        cells = results[(results.task == task) & (results.model == model) & (results.metric == row["metric"]) &
                        (results.shift_kind == "image")]
        assert row["image ci_low"] < row["image"] < row["image ci_high"]
        # averaging four conditions: narrower than a typical single condition's interval
        assert row["image ci_high"] - row["image ci_low"] < (cells.ci_high - cells.ci_low).mean()


def test_intervals_are_seeded_and_do_not_depend_on_other_merged_runs(runs):
    both = build_table(list(runs))
    again = build_table(list(runs))
    pd.testing.assert_frame_equal(both, again)
    other_seed = build_table(list(runs), seed=1)
    assert np.allclose(other_seed["image"], both["image"])
    assert not np.allclose(other_seed["image ci_low"], both["image ci_low"])
    alone = build_table([runs[0]])
    pd.testing.assert_frame_equal(alone.reset_index(drop=True),
                                  both[both.model == "base"].drop(columns=[]).reset_index(drop=True)[alone.columns])


def test_kind_interval_recomputed_by_hand_from_samples(runs):
    """The image-kind interval of base on syn_pope equals a paired bootstrap written out by hand."""
    from vittle_bench.metrics.stats import cell_seed, resample_weights

    row = build_table(list(runs)).set_index(["task", "model"]).loc[("syn_pope", "base")]
    records = [json.loads(line) for line in (runs[0] / "samples.jsonl").open()]
    image = [r for r in records if r["task"] == "syn_pope" and r["shift_kind"] == "image"]
    conditions = sorted({r["condition"] for r in image})
    ids = sorted({r["sample_id"] for r in records if r["task"] == "syn_pope"})
    correct = np.zeros((len(conditions), len(ids)))
    for r in image:
        correct[conditions.index(r["condition"]), ids.index(r["sample_id"])] = r["score"]
    weights = resample_weights(len(ids), cell_seed(0, "syn_pope", "base"), 1000)
    draws = [np.mean([w @ c / w.sum() for c in correct]) for w in weights]
    assert row["image ci_low"] == pytest.approx(100 * np.quantile(draws, 0.025))  # accuracy is in percent
    assert row["image ci_high"] == pytest.approx(100 * np.quantile(draws, 0.975))


@pytest.mark.parametrize("group_by,columns,probe,n_conditions", [
    ("shift", {"clean", "gaussian_noise", "defocus_blur", "keyboard", "gaussian_noise+keyboard"}, "gaussian_noise", 3),
    ("severity", {"clean", "sev1", "sev3", "sev5"}, "sev3", 4),
    ("condition", {"clean", "gaussian_noise@1", "gaussian_noise@3", "gaussian_noise@5", "defocus_blur@3",
                   "keyboard@1", "keyboard@3", "gaussian_noise@3+keyboard@3"}, "keyboard@3", 1),
])
def test_group_by(runs, group_by, columns, probe, n_conditions):
    long = aggregate(load_results(list(runs)), load_samples(list(runs)), group_by=group_by)
    assert set(long["group"]) == columns
    assert list(widen(long).columns[3:4]) == ["clean"]
    row = long[(long.task == "syn_mc") & (long.model == "vittle") & (long.group == probe)]
    assert row["n_conditions"].tolist() == [n_conditions] and row["ci_method"].item() != "none"


def test_long_layout_robustness_flip_rate_and_severity_auc(runs):
    long = build_table(list(runs), group_by="shift", layout="long")
    assert list(long.columns) == LONG_COLUMNS
    rows = long[(long.task == "syn_pope") & (long.model == "vittle")].set_index("group")
    clean = rows.loc["clean", "value"]
    assert rows.loc["keyboard", "relative_robustness"] == pytest.approx(rows.loc["keyboard", "value"] / clean)
    # flip rate by hand: correct on clean and wrong under keyboard@1 / keyboard@3, averaged
    records = pd.DataFrame([json.loads(line) for line in (runs[1] / "samples.jsonl").open()])
    pope = records[records.task == "syn_pope"].set_index(["condition", "sample_id"])["score"].sort_index()
    flips = [np.mean((pope.loc["clean"] == 1) & (pope.loc[f"keyboard@{s}"] == 0)) for s in (1, 3)]
    assert rows.loc["keyboard", "flip_rate"] == pytest.approx(100 * np.mean(flips))
    # AUC by hand: trapezoids over severities 0, 1, 3, 5 of gaussian noise, divided by 5
    cond = long[(long.task == "syn_pope") & (long.model == "vittle")]
    by_cond = build_table(list(runs), group_by="condition", layout="long")
    g = by_cond[(by_cond.task == "syn_pope") & (by_cond.model == "vittle")].set_index("group")["value"]
    v = [g["clean"], g["gaussian_noise@1"], g["gaussian_noise@3"], g["gaussian_noise@5"]]
    by_hand = ((v[0] + v[1]) / 2 * 1 + (v[1] + v[2]) / 2 * 2 + (v[2] + v[3]) / 2 * 2) / 5
    assert cond.set_index("group").loc["gaussian_noise", "severity_auc"] == pytest.approx(by_hand)
    assert np.isnan(rows.loc["clean", "severity_auc"])


def test_csv_round_trips_through_pandas(runs, tmp_path):
    for layout in ("wide", "long"):
        out = tmp_path / f"{layout}.csv"
        assert main(["leaderboard", *map(str, runs), "--format", "csv", "--layout", layout, "--output", str(out)]) == 0
        table = build_table(list(runs), layout=layout)
        back = pd.read_csv(out)
        assert list(back.columns) == list(table.columns) and len(back) == len(table)
        pd.testing.assert_frame_equal(back.astype({c: float for c in back.select_dtypes("number").columns}),
                                      table.astype({c: float for c in table.select_dtypes("number").columns}),
                                      check_exact=False, rtol=1e-5, check_dtype=False)


def test_markdown_is_a_table_with_bold_best_and_intervals(runs, capsys):
    assert main(["leaderboard", *map(str, runs), "--format", "markdown"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 6
    assert lines[0].replace(" ", "").startswith("|task|model|metric|clean|image|text|joint|n_errors|")
    assert re.fullmatch(r"\|(:?-+:?\|)+", lines[1].replace(" ", ""))
    assert len({line.count("|") for line in lines}) == 1
    assert all("±" in line for line in lines[2:])
    cells = {(r[0], r[1]): r for r in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    assert {k: r[-1] for k, r in cells.items()} == {  # n_errors shown only where nonzero
        ("syn_mc", "base"): "2", ("syn_mc", "vittle"): "", ("syn_open", "base"): "", ("syn_open", "vittle"): "",
        ("syn_pope", "base"): "", ("syn_pope", "vittle"): ""}
    table = build_table(list(runs)).set_index(["task", "model"])
    for task in ("syn_mc", "syn_pope", "syn_open"):
        for i, column in enumerate(("clean", "image", "text", "joint"), start=3):
            shown = table.loc[task][column].round(1)
            for model in shown.index:
                text = cells[(task, model)][i]
                assert text.startswith(f"**{shown[model]:.1f}**") == (shown[model] == shown.max()), (task, column)


class _Tabular:
    """Reads a LaTeX tabular: its column spec and the cells of every row."""

    def __init__(self, latex: str) -> None:
        spec = re.search(r"\\begin\{tabular\}\{([^}]*)\}", latex)
        assert spec, "no tabular"
        self.spec = spec.group(1)
        body = latex[spec.end():latex.index(r"\end{tabular}")]
        body = re.sub(r"\\(toprule|midrule|bottomrule)", "", body)
        self.rows = [re.split(r"(?<!\\)&", row) for row in body.split(r"\\") if row.strip()]


def test_latex_is_a_booktabs_tabular_with_the_right_columns_and_bold_best(runs, tmp_path):
    for ci in ("pm", "subscript", "none"):
        latex = render(build_table(list(runs)), "latex", ci)
        tab = _Tabular(latex)
        assert tab.spec == "ll" + "r" * 5  # task, model, clean, image, text, joint, errors
        assert len(tab.rows) == 1 + 6 and all(len(row) == len(tab.spec) for row in tab.rows)
        assert all(cmd in latex for cmd in (r"\toprule", r"\midrule", r"\bottomrule"))
        assert ("$\\pm$" in latex) == (ci == "pm") and ("$_{\\pm" in latex) == (ci == "subscript")
    assert [c.strip() for c in tab.rows[0]] == ["Task", "Model", "Clean", "Image", "Text", "Joint", "Errors"]
    assert r"syn\_mc (accuracy, \%)" in latex
    table = build_table(list(runs))
    for i, column in enumerate(["clean", "image", "text", "joint"], start=2):
        for task in ("syn_mc", "syn_pope", "syn_open"):
            rows = table[table.task == task][column].round(1)
            best = rows.idxmax()
            assert tab.rows[1 + best][i].strip() == rf"\textbf{{{rows[best]:.1f}}}"
            assert all(r"\textbf" not in tab.rows[1 + j][i] for j in rows.index if rows[j] != rows[best])


def test_latex_escapes_names_and_compiles_when_tex_is_installed(tmp_path):
    long = pd.DataFrame([{"task": "t_1", "model": "org/m_&%#~", "metric": "accuracy", "unit": "%",
                          "higher_is_better": True, "group": g, "shift_kind": g,
                          "value": v, "ci_low": v - 1, "ci_high": v + 1, "n_errors": 0}
                         for g, v in (("clean", 70.0), ("image", 60.0))])
    latex = render(widen(long), "latex")
    assert r"org/m\_\&\%\#\textasciitilde{}" in latex
    assert all(len(row) == 4 for row in _Tabular(latex).rows)
    engine = next((e for e in ("pdflatex", "lualatex", "xelatex", "tectonic") if shutil.which(e)), None)
    if engine is None:
        pytest.skip("no TeX engine installed")
    doc = tmp_path / "board.tex"
    board = render(build_table([write_run(tmp_path / "r", "m", 0.7, n=20)]), "latex")
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + latex + "\n\n"
                   + board + "\n\\end{document}\n")
    args = ([engine, doc.name] if engine == "tectonic"
            else [engine, "-interaction=nonstopmode", "-halt-on-error", doc.name])
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "board.pdf").is_file()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.rows = 0
        self.headers = 0
        self.script = ""
        self._in_script = False
        self.external = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        self.rows += tag == "tr"
        self.headers += tag == "th"
        self._in_script = tag == "script"
        self.external += [v for k, v in attrs.items() if k in ("src", "href") and v]

    def handle_data(self, data):
        if self._in_script:
            self.script += data


def test_html_is_one_self_contained_page_with_a_sortable_table(runs, tmp_path):
    out = tmp_path / "board.html"
    assert main(["leaderboard", *map(str, runs), "--format", "html", "--output", str(out)]) == 0
    page = _Page()
    page.feed(out.read_text())
    assert {"table", "thead", "tbody", "script", "style"} <= set(page.tags)
    assert page.rows == 1 + 6 and page.headers == 8
    assert "addEventListener" in page.script and "sort(" in page.script and "data" in page.script
    assert page.external == [] and "http" not in out.read_text()
    assert 'data-value="' in out.read_text()


def test_html_page_comes_from_the_packaged_template_and_escapes_text_as_html_escape_does():
    assert (files("vittle_bench") / "templates" / "leaderboard.html.j2").is_file()
    table = pd.DataFrame({"task": ["a<b>&\"c'"], "value": [1.5], "empty": [np.nan]})
    page = render(table, "html")
    assert page.startswith("<!DOCTYPE html>\n") and page.endswith("</script>\n</body></html>")
    assert "<th>task</th><th>value</th><th>empty</th>" in page
    assert ('<tr><td>a&lt;b&gt;&amp;&quot;c&#x27;</td><td class="num" data-value="1.5">1.5</td>'
            '<td class="num" data-value=""></td></tr>\n</tbody>') in page
    assert "<tbody>\n\n</tbody>" in render(table.iloc[:0], "html")


def _compare_csv(args: list[str], capsys) -> pd.DataFrame:
    assert main(["compare", *args, "--format", "csv"]) == 0
    return pd.read_csv(StringIO(capsys.readouterr().out))


def test_compare_cells_kinds_and_tests(runs, capsys):
    table = _compare_csv([str(runs[0]), str(runs[1])], capsys)
    cells, kinds = table[table.scope == "cell"], table[table.scope == "kind"]
    assert len(cells) == 3 * 8 and len(kinds) == 3 * 4
    assert set(kinds.shift_kind) == {"image", "text", "joint", "all shifts"}
    assert np.allclose(table["diff"], table["b"] - table["a"], atol=1e-3)  # CSV keeps 6 significant digits
    assert ((table.ci_low <= table["diff"] + 1e-9) & (table["diff"] <= table.ci_high + 1e-9)).all()
    assert set(cells[cells.task != "syn_open"].test) == {"McNemar exact"}
    assert set(cells[cells.task == "syn_open"].test) == {"Wilcoxon signed-rank"}
    # McNemar by hand on one cell, from the two samples.jsonl
    a, b = (pd.DataFrame([json.loads(line) for line in (d / "samples.jsonl").open()]) for d in runs)
    key = ["sample_id"]
    pick = lambda r: r[(r.task == "syn_pope") & (r.condition == "gaussian_noise@1")].set_index(key)  # noqa: E731
    pa, pb = pick(a)["score"], pick(b)["score"]
    only_a, only_b = int(((pa == 1) & (pb == 0)).sum()), int(((pa == 0) & (pb == 1)).sum())
    row = cells[(cells.task == "syn_pope") & (cells.condition == "gaussian_noise@1")].iloc[0]
    assert row.p_value == pytest.approx(scipy_stats.binomtest(only_b, only_a + only_b).pvalue)
    assert row["diff"] == pytest.approx(100 * (pb.mean() - pa.mean()), abs=1e-3)
    # pairing drops the samples that failed in run A
    kb3 = cells[(cells.task == "syn_mc") & (cells.condition == "keyboard@3")].iloc[0]
    assert kb3.n == 58


def test_compare_a_run_with_itself_finds_no_difference(runs, capsys):
    table = _compare_csv([str(runs[1]), str(runs[1])], capsys)
    assert np.allclose(table["diff"], 0) and (table.p_value == 1).all()


def test_compare_two_models_in_one_run_needs_model_choice(runs, tmp_path, capsys):
    both = tmp_path / "both"
    both.mkdir()
    for name in ("results.csv", "samples.jsonl"):
        text = (runs[0] / name).read_text()
        extra = (runs[1] / name).read_text()
        (both / name).write_text(text + (extra.split("\n", 1)[1] if name == "results.csv" else extra))
    assert main(["compare", str(both), str(both)]) == 2
    err = capsys.readouterr().err
    assert "several models" in err and "--model-a" in err and len(err.strip().splitlines()) == 1
    one = _compare_csv([str(both), str(both), "--model-a", "base", "--model-b", "vittle"], capsys)
    two = _compare_csv([str(runs[0]), str(runs[1])], capsys)
    pd.testing.assert_frame_equal(one, two)


def test_compare_markdown(runs, capsys):
    assert main(["compare", str(runs[0]), str(runs[1])]) == 0
    out = capsys.readouterr().out
    assert "A = `base`, B = `vittle`" in out and "B − A (pp)" in out and "McNemar exact" in out
    assert sum(line.startswith("|") for line in out.splitlines()) == 3 * (2 + 12)


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    for args in (["leaderboard", str(tmp_path / "missing")], ["compare", str(tmp_path), str(tmp_path)],
                 ["leaderboard", str(tmp_path), "--output", str(tmp_path / "no" / "dir.md")]):
        if args[-1].endswith("dir.md"):
            args[1] = str(write_run(tmp_path / "run", "m", 0.7, n=10, tasks=("syn_mc",)))
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("vittle-bench: error:") and len(err.strip().splitlines()) == 1
        assert ("cannot write" in err) if args[-1].endswith("dir.md") else ("results.csv" in err)


PLOT_STEMS = ["clean_vs_shift", "difference", "severity_syn_pope"]


@pytest.fixture(scope="module")
def pope_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pope")
    return (write_run(root / "base", "base", skill=0.62, n=30, seed=1, tasks=("syn_pope",)),
            write_run(root / "vittle", "vittle", skill=0.75, n=30, seed=2, tasks=("syn_pope",)))


def _write_plots(runs, out, tmp_path) -> list[str]:
    assert main(["leaderboard", *map(str, runs), "--output", str(tmp_path / "b.md"), "--plots", str(out)]) == 0
    assert main(["compare", *map(str, runs), "--output", str(tmp_path / "c.md"), "--plots", str(out)]) == 0
    return sorted(p.name for p in out.iterdir())


def test_plots_are_written_as_png_and_pdf(pope_runs, tmp_path):
    pytest.importorskip("matplotlib")
    names = _write_plots(pope_runs, tmp_path / "plots", tmp_path)
    assert names == sorted(f"{s}.{ext}" for s in PLOT_STEMS for ext in ("pdf", "png"))
    for name in names:
        data = (tmp_path / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG" if name.endswith("png") else b"%PDF") and len(data) > 5000


@pytest.mark.slow
def test_plots_regenerate_byte_identical(runs, tmp_path):
    pytest.importorskip("matplotlib")
    first, second = _write_plots(runs, tmp_path / "p1", tmp_path), _write_plots(runs, tmp_path / "p2", tmp_path)
    assert len(first) == 10
    assert first == second
    for name in first:
        assert (tmp_path / "p1" / name).read_bytes() == (tmp_path / "p2" / name).read_bytes(), name


def test_plots_without_matplotlib_say_how_to_install(runs, tmp_path, monkeypatch):
    from vittle_bench import plots
    from vittle_bench.config import ConfigError

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ConfigError, match=r"pip install 'vittle-bench\[plots\]'"):
        plots.leaderboard_plots(load_results(list(runs)), tmp_path)


@pytest.mark.parametrize("metric,higher,best", [("accuracy", True, "b"), ("unparseable_rate", False, "a"),
                                                ("emid[enc]", False, "a"), ("yes_ratio", None, None)])
def test_bold_follows_the_declared_direction(metric, higher, best):
    long = pd.DataFrame([{"task": "t", "model": m, "metric": metric, "unit": "%", "higher_is_better": higher,
                          "group": "clean", "shift_kind": "clean", "value": v, "ci_low": v - 1, "ci_high": v + 1,
                          "n_errors": 0} for m, v in (("a", 10.0), ("b", 20.0))])
    rows = {line.split("|")[2].strip(): line for line in render(widen(long), "markdown").splitlines()[2:4]}
    assert {m for m, line in rows.items() if "**" in line} == ({best} if best else set())


def _with_emi(run, qualifier: str):
    """A copy of a run's results.csv with one EMI row per cell of syn_open, under the given qualifier."""
    results = pd.read_csv(run / "results.csv")
    emi = results[(results.task == "syn_open") & (results.metric == "n_errors")].assign(
        metric=f"emi[enc+enc;{qualifier}]", value=0.01, unit="nats", higher_is_better=True, primary=False)
    pd.concat([results, emi]).to_csv(run / "results.csv", index=False)
    return run


def test_emi_from_different_estimators_is_refused_in_one_column(runs, tmp_path, capsys):
    a = _with_emi(Path(shutil.copytree(runs[0], tmp_path / "a")), "club-reference@aaaa1111")
    b = _with_emi(Path(shutil.copytree(runs[1], tmp_path / "b")), "club-reference@bbbb2222")
    assert main(["leaderboard", str(a), str(b), "--metric", "emi"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different estimators" in err and "aaaa1111" in err and "bbbb2222" in err
    assert main(["leaderboard", str(a), "--metric", "emi", "--format", "csv"]) == 0  # one estimator: one column
    assert "emi[enc+enc;club-reference@aaaa1111]" in capsys.readouterr().out
    _with_emi(b, "club-reference@aaaa1111")  # b now also holds the same estimator's rows: the two merge
    assert main(["leaderboard", str(a), str(b), "--metric", "emi[enc+enc;club-reference@aaaa1111]"]) == 0


def _corrupt(run, tmp_path, how: str):
    """A copy of `run` damaged the way a crash, a truncation or a hand edit damages files."""
    bad = Path(shutil.copytree(run, tmp_path / how))
    results, samples = bad / "results.csv", bad / "samples.jsonl"
    text = results.read_text()
    if how == "cut_mid_number":  # '0.9' -> '0.': the last line stops inside a number
        results.write_text(text.rstrip("\n").rsplit(",", 11)[0] + ",0.")
    elif how == "non_numeric":
        lines = text.splitlines()
        cells = lines[3].split(",")
        cells[6] = "n/a"
        lines[3] = ",".join(cells)
        results.write_text("\n".join(lines) + "\n")
    elif how == "empty":
        results.write_text("")
    elif how == "header_only":
        results.write_text(text.splitlines()[0] + "\n")
    elif how == "old_format":  # written before results.csv carried condition, unit, direction and headline
        frame = pd.read_csv(results)
        frame[["model", "task", "shift", "shift_kind", "severity", "metric", "value", "ci_low", "ci_high", "n"]].to_csv(
            results, index=False)
    elif how == "samples_cut_mid_record":
        samples.write_text(samples.read_text()[:-40])
    return bad


@pytest.mark.parametrize("how,phrase", [
    ("cut_mid_number", "last line is cut off"), ("non_numeric", "results.csv:4: value 'n/a' is not a number"),
    ("empty", "not a readable results.csv"), ("header_only", "no result rows"), ("old_format", "older vittle-bench"),
    ("samples_cut_mid_record", "samples.jsonl:"),
])
def test_damaged_files_are_refused_in_one_line_naming_them(runs, tmp_path, capsys, how, phrase):
    bad = _corrupt(runs[0], tmp_path, how)
    for command in (["leaderboard", str(bad)], ["compare", str(bad), str(runs[1])]):
        assert main(command) == 2, (how, command)
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and phrase in err and str(bad) in err, (how, err)


def test_small_values_keep_three_significant_digits():
    """EMI is a few hundredths of a nat: shown as 0.0123, not 0.0; percentages keep one decimal."""
    long = pd.DataFrame([{"task": "t", "model": m, "metric": metric, "unit": unit, "higher_is_better": True,
                          "group": "clean", "shift_kind": "clean", "value": v, "ci_low": v - d, "ci_high": v + d,
                          "n_errors": 0}
                         for m, metric, unit, v, d in (("a", "emi[x]", "nats", 0.0123, 0.004),
                                                       ("a", "accuracy", "%", 94.7, 2.8))])
    lines = render(widen(long), "markdown").splitlines()[2:4]
    assert "0.0123 ± 0.0040" in next(line for line in lines if "emi[x]" in line)
    assert "94.7 ± 2.8" in next(line for line in lines if "accuracy" in line)


# --- published reference rows (--reference) ---------------------------------------------------------------------

PAPER = {  # leaderboards/paper/vittle2025.csv, LLaVA-Bench-COCO relative score: clean, visual, text, joint
    "LLaVA-1.5-7B": (77.8, 73.4, 72.2, 62.3), "LLaVA-1.5-7B+Vittle(F)": (76.1, 74.2, 74.1, 64.4),
    "LLaVA-1.5-7B+Vittle(L)": (76.7, 73.9, 73.0, 62.7)}
REFERENCE_HEADER = "model,task,column,metric,value,source,note\n"


def _as_llava_bench_coco(run: Path) -> Path:
    """A synthetic open-ended run relabelled as LLaVA-Bench-COCO scored by an LLM judge (`relative_score`)."""
    results = pd.read_csv(run / "results.csv", dtype=str, keep_default_na=False)
    results["task"] = results["task"].replace("syn_open", "llava_bench_coco")
    results["metric"] = results["metric"].str.replace("relative_score_overlap", "relative_score", regex=False)
    results.to_csv(run / "results.csv", index=False)
    records = [json.loads(line) for line in (run / "samples.jsonl").open()]
    (run / "samples.jsonl").write_text("".join(json.dumps({**r, "task": "llava_bench_coco"}) + "\n" for r in records))
    return run


@pytest.fixture(scope="module")
def coco_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    return tuple(_as_llava_bench_coco(write_run(root / name, name, skill=skill, n=30, seed=seed, tasks=("syn_open",)))
                 for name, skill, seed in (("base", 0.62, 1), ("vittle", 0.75, 2)))


def _paper45_table(runs) -> pd.DataFrame:
    """The measured rows as `leaderboard --plan paper45` lays them out (the published rows' layout)."""
    from vittle_bench.plans import load_plans

    plan = load_plans()["paper45"]
    return build_table(list(runs), n_boot=200, columns=plan.column_of, order=plan.column_order()).set_index("model")


def _board(runs, capsys, *options: str) -> str:
    assert main(["leaderboard", *map(str, runs), "--n-boot", "200", "--reference", "paper", "--plan", "paper45",
                 *options]) == 0
    return capsys.readouterr().out


def test_the_paper_reference_holds_the_published_numbers():
    from vittle_bench.reference import load_reference

    reference = load_reference("paper", "paper45")
    scores = reference[reference.metric == "relative_score"]
    assert set(scores.task) == {"llava_bench_coco"} and set(scores.source) == {
        "Vittle paper, LLaVA-Bench-COCO, relative score"}
    for model, values in PAPER.items():
        rows = scores[scores.model == model].set_index("column")["value"]
        assert tuple(rows[c] for c in ("clean", "visual", "text", "joint")) == values
    assert set(reference.metric) == {"relative_score"}  # the EMID rows belong in the shift-kind layout
    emi = load_reference("paper").set_index(["model", "metric"])["value"]
    assert emi.to_dict() == {("LLaVA", "emid_bound"): 0.068, ("LLaVA", "emid"): 0.026,
                             ("LLaVA+Vittle(F)", "emid_bound"): 0.047, ("LLaVA+Vittle(F)", "emid"): 0.025}


def test_reference_rows_appear_labelled_without_intervals_and_never_bold(coco_runs, capsys):
    lines = [line for line in _board(coco_runs, capsys).splitlines() if line.startswith("|")]
    rows = {r[1]: r for r in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    assert list(rows) == ["base", "vittle", *(f"published:{m}" for m in PAPER)]  # measured first, then published
    for model, values in PAPER.items():
        assert rows[f"published:{model}"][3:7] == [f"{v:.1f}" for v in values]  # no ±, no bold
    # the published numbers are above both synthetic models, yet bold stays on the better measured row
    measured = _paper45_table(coco_runs)
    for i, column in enumerate(("clean", "visual", "text", "joint"), start=3):
        best = measured[column].round(1).idxmax()
        assert rows[best][i].startswith("**") and not any("**" in r[i] for m, r in rows.items() if m != best)
    note = _board(coco_runs, capsys).split("\n\n")[-1]
    assert "not measured here" in note and "Vittle paper, LLaVA-Bench-COCO, relative score" in note
    csv = pd.read_csv(StringIO(_board(coco_runs, capsys, "--format", "csv")))
    published = csv[csv.row == "published"]
    assert list(published.model) == [f"published:{m}" for m in PAPER] and published["clean ci_low"].isna().all()
    assert set(published.source) == {"Vittle paper, LLaVA-Bench-COCO, relative score"}
    latex = _board(coco_runs, capsys, "--format", "latex")
    tab = _Tabular(latex)
    assert len(tab.rows) == 1 + 5 and all(len(row) == len(tab.spec) for row in tab.rows)
    assert "published:LLaVA-1.5-7B+Vittle(F) & 76.1 & 74.2 & 74.1 & 64.4" in latex
    page = _board(coco_runs, capsys, "--format", "html")
    assert "<td>published:LLaVA-1.5-7B</td>" in page and "not measured here" in page


def test_reference_difference_is_measured_minus_published(coco_runs, capsys):
    csv = pd.read_csv(StringIO(_board(coco_runs, capsys, "--format", "csv", "--reference-model",
                                      "vittle=LLaVA-1.5-7B+Vittle(F)", "--reference-model", "base=LLaVA-1.5-7B")))
    measured = _paper45_table(coco_runs)
    differences = csv[csv.row == "difference"].set_index("model")
    assert list(differences.index) == ["Δ vittle vs published:LLaVA-1.5-7B+Vittle(F)",
                                       "Δ base vs published:LLaVA-1.5-7B"]
    for model, published in (("vittle", "LLaVA-1.5-7B+Vittle(F)"), ("base", "LLaVA-1.5-7B")):
        label = f"Δ {model} vs published:{published}"
        for column, value in zip(("clean", "visual", "text", "joint"), PAPER[published]):
            assert differences.loc[label, column] == pytest.approx(measured.loc[model, column] - value, abs=1e-4)
    lines = _board(coco_runs, capsys, "--reference-model", "base=published:LLaVA-1.5-7B").splitlines()
    row = [c.strip() for c in next(line for line in lines if "Δ base" in line).strip("|").split("|")]
    shown = measured.loc["base", "clean"] - 77.8
    assert row[3] == f"{shown:+.1f}" and "**" not in "".join(row) and "±" not in "".join(row)


def test_a_hand_made_cell_differs_from_its_published_value_exactly(tmp_path):
    from vittle_bench.reference import add_reference, read_reference

    long = pd.DataFrame([{"task": "llava_bench_coco", "model": "m", "metric": "relative_score",
                          "unit": "relative score", "higher_is_better": True, "group": g, "shift_kind": g,
                          "value": v, "ci_low": v - 1, "ci_high": v + 1, "n_errors": 0}
                         for g, v in (("clean", 80.0), ("image", 70.5), ("text", 60.0))])
    path = tmp_path / "ref.csv"
    path.write_text(REFERENCE_HEADER + "P,llava_bench_coco,clean,relative_score,77.8,Paper T1,\n"
                    "P,llava_bench_coco,image,relative_score,73.4,Paper T1,\n"
                    "P,llava_bench_coco,joint,relative_score,62.3,Paper T1,\n")
    table = add_reference(widen(long), read_reference(path), [("m", "P")])
    delta = table[table.row == "difference"].iloc[0]
    assert delta["model"] == "Δ m vs published:P"
    assert delta["clean"] == pytest.approx(2.2) and delta["image"] == pytest.approx(-2.9)
    assert pd.isna(delta["text"]) and pd.isna(delta["joint"])  # only where both measured and published
    assert "joint" in table.columns and pd.isna(table.loc[table.model == "m", "joint"]).all()


@pytest.mark.parametrize("content,phrase", [
    ("", "not a readable reference CSV"),
    (REFERENCE_HEADER, "no rows"),
    ("model,task,metric,value,source\nP,t,relative_score,1,S\n", "no column column"),
    (REFERENCE_HEADER + "P,llava_bench_coco,clean,relative_score,n/a,S,\n", "ref.csv:2: value 'n/a' is not a number"),
    (REFERENCE_HEADER + "P,llava_bench_coco,visual,relative_score,70,S,\n", "ref.csv:2: column 'visual'"),
    (REFERENCE_HEADER + "P,llava_bench_coco,clean,gpt_score,70,S,\n", "not a declared metric"),
    (REFERENCE_HEADER + "P,llava_bench_coco,clean,relative_score,70,,\n", "ref.csv:2: empty source"),
    (REFERENCE_HEADER + "P,llava_bench_coco,clean,relative_score,70,S,\n" * 2, "ref.csv:3: a second value"),
    (REFERENCE_HEADER + "P,llava_bench_coco,clean,relative_score,7", "the last line is cut off"),
])
def test_a_malformed_reference_csv_is_refused_in_one_line(coco_runs, tmp_path, capsys, content, phrase):
    path = tmp_path / "ref.csv"
    path.write_text(content)
    assert main(["leaderboard", str(coco_runs[0]), "--reference", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vittle-bench: error:") and phrase in err, err
    assert str(path) in err


@pytest.mark.parametrize("options,phrase", [
    (["--reference", "no/such.csv"], "no such file or folder"),
    (["--reference-model", "base=LLaVA-1.5-7B"], "needs --reference"),
    (["--reference", "paper", "--layout", "long"], "wide table"),
    (["--reference", "paper", "--group-by", "shift"], "wide table"),
    (["--reference", "paper", "--reference-model", "base"], "MEASURED=PUBLISHED"),
    (["--reference", "paper", "--reference-model", "nobody=LLaVA-1.5-7B"], "no measured model 'nobody'"),
    (["--reference", "paper", "--reference-model", "base=GPT-9"], "no published model 'GPT-9'"),
    (["--reference", "paper", "--reference-model", "base=LLaVA"], "no task and metric in common"),  # EMI rows only
])
def test_reference_options_misused_exit_2_with_one_line(coco_runs, capsys, options, phrase):
    assert main(["leaderboard", str(coco_runs[0]), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and phrase in err, err


def test_a_reference_for_other_tasks_or_scorers_adds_no_row_and_says_so(runs, capsys):
    """The stand-in scorer's relative_score_overlap is not the paper's relative_score: no published row, one line
    on stderr, the measured table as without --reference."""
    assert main(["leaderboard", *map(str, runs), "--n-boot", "200", "--reference", "paper"]) == 0
    out, err = capsys.readouterr()
    assert "published:" not in out.split("\n\n")[0] and "no published row" in err
    assert sum(line.startswith("|") for line in out.splitlines()) == 2 + 6


def test_published_averages_appear_only_in_the_layout_they_were_published_in(coco_runs, capsys):
    """The paper's Text average counts three translations, which the shift-kind table files under domain: the
    paper's LLaVA-Bench-COCO rows are set beside `--plan paper45`'s columns only, never the shift kinds."""
    assert main(["leaderboard", *map(str, coco_runs), "--n-boot", "200", "--reference", "paper"]) == 0
    captured = capsys.readouterr()
    assert "published:" not in captured.out and "no published row" in captured.err
    assert "published:LLaVA-1.5-7B" in _board(coco_runs, capsys)
