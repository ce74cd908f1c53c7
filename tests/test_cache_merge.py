"""`vittle-bench cache merge`: caches written by separate processes (one per node, on local disk) merge into one
union, conflicting values are counted and the first kept, and a rerun with the merged cache generates nothing."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vittle_bench.cache import AnswerCache, CachedAnswer
from vittle_bench.cli import main
from vittle_bench.encoders.cache import EmbeddingCache
from vittle_bench.judges.cache import JudgmentCache


def answers(path: Path, items: dict[str, str]) -> Path:
    cache = AnswerCache(path)
    cache.put_many({key: CachedAnswer(output, "input-hash", "prompt") for key, output in items.items()})
    cache.close()
    return path


def stored(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT key, output FROM answers_by_source"))


def test_merge_is_the_union_and_keeps_the_first_of_conflicting_values(tmp_path, capsys):
    a = answers(tmp_path / "a.sqlite", {"k1": "yes", "k2": "no", "k3": "from a"})
    b = answers(tmp_path / "b.sqlite", {"k1": "yes", "k3": "from b", "k4": "no"})
    assert main(["cache", "merge", str(a), str(b), "--into", str(tmp_path / "c.sqlite")]) == 0
    out, err = capsys.readouterr()
    assert stored(tmp_path / "c.sqlite") == {"k1": "yes", "k2": "no", "k3": "from a", "k4": "no"}
    assert out.strip() == (f"{tmp_path / 'c.sqlite'}: 4 answers after merging 2 cache(s) "
                           f"({a}: 3 read, 3 new; {b}: 3 read, 1 new)")
    (warning,) = err.strip().splitlines()
    assert "1 key(s) held different values" in warning and "(e.g. k3)" in warning and "first value" in warning

    answers(tmp_path / "c.sqlite", {"k5": "own"})  # a target that exists keeps its own values first
    d = answers(tmp_path / "d.sqlite", {"k5": "other", "k6": "new"})
    assert main(["cache", "merge", str(d), "--into", str(tmp_path / "c.sqlite")]) == 0
    assert stored(tmp_path / "c.sqlite")["k5"] == "own" and stored(tmp_path / "c.sqlite")["k6"] == "new"
    assert stored(a) == {"k1": "yes", "k2": "no", "k3": "from a"}  # sources are read, never written


def test_cache_directories_merge_answers_judgments_and_embeddings(tmp_path, capsys):
    answers(tmp_path / "n1" / "answers.sqlite", {"k1": "yes"})
    answers(tmp_path / "n2" / "answers.sqlite", {"k2": "no"})
    judgments = JudgmentCache(tmp_path / "n2" / "judgments.sqlite")
    judgments.put("j", "judge-model", "8 6", 8.0, 6.0)
    judgments.close()

    class Encoder:
        name, modality, dim = "fake", "text", 2

        def encode(self, items):
            return np.ones((len(items), 2), dtype=np.float32)

    class Refusing(Encoder):
        def encode(self, items):
            raise AssertionError("the merged cache should hold this embedding")

    with EmbeddingCache(tmp_path / "n1" / "embeddings.sqlite") as cache:
        cache.encode(Encoder(), ["a question"])
    assert main(["cache", "merge", str(tmp_path / "n1"), str(tmp_path / "n2"), "--into", str(tmp_path / "all")]) == 0
    assert sorted(p.name for p in (tmp_path / "all").glob("*.sqlite")) == [
        "answers.sqlite", "embeddings.sqlite", "judgments.sqlite"]
    assert stored(tmp_path / "all" / "answers.sqlite") == {"k1": "yes", "k2": "no"}
    assert JudgmentCache(tmp_path / "all" / "judgments.sqlite").get("j") == ("8 6", 8.0, 6.0)
    with EmbeddingCache(tmp_path / "all" / "embeddings.sqlite") as cache:
        assert cache.encode(Refusing(), ["a question"]).tolist() == [[1.0, 1.0]]
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def answers_and_judgments(root: Path) -> None:
    answers(root / "a.sqlite", {"k": "v"})
    JudgmentCache(root / "j.sqlite").close()


@pytest.mark.parametrize("make, args, message", [
    (lambda t: None, ["missing", "--into", "c.sqlite"], "cache missing does not exist"),
    (lambda t: (t / "junk.sqlite").write_text("not a database"), ["junk.sqlite", "--into", "c.sqlite"],
     "junk.sqlite is not a readable SQLite file"),
    (answers_and_judgments, ["a.sqlite", "j.sqlite", "--into", "c.sqlite"], "merge one kind of cache at a time"),
    (lambda t: answers(t / "a.sqlite", {"k": "v"}), ["a.sqlite", "--into", "a.sqlite"], "is also the merge target"),
    (answers_and_judgments, ["a.sqlite", "--into", "j.sqlite"], "j.sqlite is not a vittle-bench cache"),
    (lambda t: (t / "empty").mkdir(), ["empty", "--into", "c"], "no cache file"),
])
def test_merge_mistakes_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, make, args, message):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    assert main(["cache", "merge", *args]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line


def node_cache(world_cache: Path, path: Path) -> Path:
    """A node's own cache directory: the built-in world, no answers yet."""
    from vittle_bench.builtin.world import world_dir

    shutil.copytree(world_dir(world_cache), world_dir(path))
    return path


def run_node(argv: list[str], separate_process: bool) -> subprocess.Popen | None:
    if not separate_process:
        assert main(argv) == 0
        return None
    return subprocess.Popen([sys.executable, "-m", "vittle_bench", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("separate_processes", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["in-process", "two-processes"])
def test_two_nodes_caches_merged_then_a_rerun_generates_nothing(tiny_random_checkpoint, world_cache, tmp_path,
                                                                capsys, separate_processes):
    """Two runs (two nodes; with `separate_processes`, two concurrent `vittle-bench run` processes), each on
    its half of the grid with a cache of its own; the merged cache serves the whole grid."""
    common = ["--model", f"hf:{tiny_random_checkpoint}", "--shifts", "keyboard@1", "--limit", "4"]
    halves = {"n1": "shapes_pope_random", "n2": "shapes_mc"}
    nodes = {name: node_cache(world_cache, tmp_path / f"{name}-cache") for name in halves}
    runs = [run_node(["run", *common, "--tasks", task, "--cache-dir", str(nodes[name]),
                      "--output", str(tmp_path / f"{name}-run")], separate_processes) for name, task in halves.items()]
    for run in filter(None, runs):
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    for name in halves:
        with sqlite3.connect(nodes[name] / "answers.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM answers_by_source").fetchone()[0] == 8  # 2 conditions x 4 samples
    assert main(["cache", "merge", str(nodes["n1"]), str(nodes["n2"]), "--into", str(tmp_path / "merged")]) == 0
    capsys.readouterr()
    assert main(["run", *common, "--tasks", ",".join(halves.values()), "--cache-dir", str(tmp_path / "merged"),
                 "--output", str(tmp_path / "rerun")]) == 0
    assert "(0 generated, 16 cached)" in capsys.readouterr().out
