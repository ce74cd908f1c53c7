"""`vittle-bench cache merge SOURCE... --into TARGET`: merge caches written on several machines (or by several
runs, each with a --cache-dir of its own), so that a rerun with the merged cache computes only what none of
them had.

A SOURCE is a cache directory (what --cache-dir names: its answers.sqlite, judgments.sqlite and
embeddings.sqlite are merged into the files of the same names under the directory TARGET) or one cache file
(TARGET is then a file of the same kind, or a directory to put it in). Keys hash content, so the merge is the
union of the entries; a key held with different values keeps its first value (TARGET's own, else that of the
earliest SOURCE listed), and such keys are counted and reported. Shifted images, streamed hub rows and the
built-in world are not merged: they are rebuilt where they are missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vittle_bench.cache import CacheTable


def register(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser("cache", help="merge caches written on several machines",
                           description=__doc__.split("\n\n")[0])
    actions = cache.add_subparsers(dest="action", required=True)
    merge = actions.add_parser("merge", help="union of answer (judgment, embedding) caches into one",
                               description=__doc__.split("\n\n")[1])
    merge.add_argument("sources", nargs="+", type=Path, metavar="SOURCE", help="cache directory or cache file")
    merge.add_argument("--into", required=True, type=Path, metavar="TARGET",
                       help="cache directory (or file) to merge into; created if new, added to if not")
    merge.set_defaults(func=main)


def _plan(sources: list[Path], into: Path) -> list[tuple[CacheTable, list[Path], Path]]:
    """(kind, its source files, its target file) for each kind of cache to merge."""
    from vittle_bench.cache import ANSWERS, cache_kind
    from vittle_bench.config import ConfigError
    from vittle_bench.encoders.cache import EMBEDDINGS
    from vittle_bench.judges.cache import JUDGMENTS

    tables = (ANSWERS, JUDGMENTS, EMBEDDINGS)
    for source in sources:
        if not source.exists():
            raise ConfigError(f"cache {source} does not exist")
    if all(source.is_dir() for source in sources):
        if into.exists() and not into.is_dir():
            raise ConfigError(f"--into {into} is a file; cache directories merge into a directory")
        plan = [(t, [s / t.file for s in sources if (s / t.file).is_file()], into / t.file) for t in tables]
        if not any(files for _, files, _ in plan):
            raise ConfigError(f"no cache file ({', '.join(t.file for t in tables)}) in "
                              f"{', '.join(str(s) for s in sources)}")
        return [step for step in plan if step[1]]
    if any(source.is_dir() for source in sources):
        raise ConfigError("give cache directories or cache files, not both")
    kinds = [cache_kind(source, tables) for source in sources]
    for source, kind in zip(sources, kinds):
        if kind != kinds[0]:
            raise ConfigError(f"{sources[0]} holds {kinds[0].rows_called} but {source} holds {kind.rows_called}; "
                              f"merge one kind of cache at a time")
    return [(kinds[0], sources, into / kinds[0].file if into.is_dir() else into)]


def main(args: argparse.Namespace) -> int:
    from vittle_bench.cache import merge_cache

    for table, sources, target in _plan(args.sources, args.into):
        result = merge_cache(sources, target, table)
        parts = "; ".join(f"{s.path}: {s.read:,} read, {s.added:,} new" for s in result.sources)
        print(f"{target}: {result.entries:,} {table.rows_called} after merging {len(sources)} cache(s) ({parts})")
        conflicts = sum(s.conflicts for s in result.sources)
        if conflicts:
            examples = [e for s in result.sources for e in s.examples][:3]
            print(f"vittle-bench: warning: {target}: {conflicts:,} key(s) held different values in different caches "
                  f"(e.g. {', '.join(examples)}); kept each key's first value: the target's own, else that of the "
                  f"earliest cache listed", file=sys.stderr)
    return 0
