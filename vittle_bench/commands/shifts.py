"""`vittle-bench shifts preview`: one PNG contact sheet (rows = shifts, columns = severities) and the perturbed
question texts, for an image of yours or a sample of a task — people look rather than read."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_QUESTION = "What is happening in this image? Describe the main objects and their colours."
CELL_SIZES = (32, 1024)  # a thumbnail smaller shows nothing; larger, a sheet of every shift runs to gigabytes


def register(sub: argparse._SubParsersAction) -> None:
    shifts = sub.add_parser("shifts", help="inspect shifts")
    verbs = shifts.add_subparsers(dest="verb", required=True)
    preview = verbs.add_parser("preview", help="contact sheet of shifts x severities for one sample")
    source = preview.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="an image file")
    source.add_argument("--task", help="a task name: its sample number --sample is shown")
    preview.add_argument("--question", default=DEFAULT_QUESTION, help="question shown with --image")
    preview.add_argument("--sample", type=int, default=0, help="index of the task's sample (default 0)")
    rows = preview.add_mutually_exclusive_group()
    rows.add_argument("--shifts", default="", help="shift names (one row each, over --severities), conditions "
                      "(frost@3+keyboard@2) or suites; default: every image and text shift that runs offline")
    rows.add_argument("--family", help="one row per offline shift of this family (image: noise, blur, weather, "
                      "digital, geometric; text: character, word; `vittle-bench list shifts` shows each shift's)")
    preview.add_argument("--severities", default="1,2,3,4,5",
                         help="severities of the named shifts' columns (text shifts accept 1-7; default: 1-5)")
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--cell", type=int, default=192, help=f"thumbnail size in pixels ({CELL_SIZES[0]}-"
                         f"{CELL_SIZES[1]})")
    preview.add_argument("--colors", type=int, help="save the sheet with a palette of this many colours (2-256): a "
                         "PNG several times smaller, as the sheets in docs/img are")
    preview.add_argument("--output", type=Path, required=True, help="directory for contact_sheet.png, questions.md")
    preview.add_argument("--include-path", action="append", default=[])
    preview.add_argument("--cache-dir", type=Path, help="where task data lives (default: ~/.cache/vittle-bench)")
    preview.set_defaults(func=main)


def _load_sample(args: argparse.Namespace) -> Any:
    from vittle_bench.config import ConfigError, resolve_tasks
    from vittle_bench.schema import Sample

    if args.image is not None:
        from PIL import Image

        from vittle_bench.images import prepare_image

        try:
            with Image.open(args.image) as image:
                image.load()
                prepared = prepare_image(image)  # as every task loader prepares its images
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--image {args.image}: cannot read it ({exc})") from None
        return Sample("preview", args.image.name, args.question, images=(prepared,))
    from vittle_bench.data.sources import load_samples

    spec = resolve_tasks(args.task, [Path(p) for p in args.include_path])
    cache_dir = args.cache_dir or Path.home() / ".cache" / "vittle-bench"
    try:
        samples = load_samples(spec[0], cache_dir)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a hub dataset that cannot be reached: one line, exit 2
        raise ConfigError(f"task {args.task}: its samples could not be loaded ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not 0 <= args.sample < len(samples):
        raise ConfigError(f"--sample {args.sample}: task {args.task} has {len(samples)} samples")
    return samples[args.sample]


def _offline_shifts(family: str | None = None) -> list[str]:
    """Every image and text shift that runs without the hub (`needs_hub` unset), or only those of `family`; a
    plugin that fails to build left out (`list shifts` names it)."""
    from vittle_bench.config import ConfigError
    from vittle_bench.registry import UnknownNameError
    from vittle_bench.shifts import SHIFTS
    from vittle_bench.shifts.base import build_shift

    names, families = [], set()
    for name in SHIFTS.names():
        try:
            shift = build_shift(name, 1)
        except (UnknownNameError, ValueError):
            continue
        families.add(shift.family)
        if shift.kind in ("image", "text") and not shift.needs_hub and family in (None, shift.family):
            names.append(name)
    if family is not None and not names:
        raise ConfigError(f"--family {family!r}: no shift that runs offline has it; families: "
                          f"{', '.join(sorted(families - {''}))}")
    return names


def plan_rows(text: str, severities: list[int], include_paths: list[Path]) -> dict[str, dict[int, str]]:
    """Row name -> {severity: condition label}. Names expand over the severities; conditions and suites place
    each condition at its own severity; domain conditions have nothing to preview and are left out."""
    from vittle_bench.config import ConfigError, load_suites
    from vittle_bench.registry import UnknownNameError, unknown_name_message
    from vittle_bench.shifts import SHIFTS, parse_condition
    from vittle_bench.shifts.base import build_shift

    items = [i.strip() for i in text.split(",") if i.strip()] or _offline_shifts()
    suites = load_suites(include_paths)
    rows: dict[str, dict[int, str]] = {}
    for item in items:
        labels = [str(c) for c in suites[item]["conditions"]] if item in suites else [item]
        for label in labels:
            if label == "clean" or label.startswith("domain:"):
                continue
            if "@" not in label and "+" not in label:
                if label not in SHIFTS:
                    raise UnknownNameError(unknown_name_message("shifts", label, sorted(suites) + SHIFTS.names()))
                accepted = build_shift(label, min(severities)).severities
                rows.setdefault(label, {}).update({s: f"{label}@{s}" for s in severities if s in accepted})
                continue
            try:
                condition = parse_condition(label)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            rows.setdefault(condition.name, {})[condition.severity] = condition.label
    return rows


def _thumbnail(image: Any, cell: int, caption: str | None = None) -> Any:
    """The image fitted into a square tile; with a caption (a perturbed question), the image takes the top
    half and the wrapped caption the rest."""
    import textwrap

    from PIL import Image, ImageDraw

    from vittle_bench.shifts._imaging import to_rgb

    box = cell if caption is None else cell // 2
    tile = Image.new("RGB", (cell, cell), (255, 255, 255))
    if image is not None:
        thumb = to_rgb(image).copy()
        thumb.thumbnail((cell, box), Image.Resampling.BILINEAR)
        tile.paste(thumb, ((cell - thumb.width) // 2, (box - thumb.height) // 2))
    if caption is not None:
        lines = textwrap.wrap(caption, width=max(8, cell // 6))[: max(1, (cell - box) // 12)]
        ImageDraw.Draw(tile).multiline_text((3, box + 2), "\n".join(lines), fill=(0, 0, 120), spacing=1)
    return tile


def _message_tile(text: str, cell: int) -> Any:
    from PIL import Image, ImageDraw

    tile = Image.new("RGB", (cell, cell), (215, 215, 215))
    ImageDraw.Draw(tile).multiline_text((6, cell // 2 - 12), text, fill=(120, 0, 0))
    return tile


def render_sheet(sample: Any, rows: dict[str, dict[int, str]], severities: list[int], seed: int,
                 cell: int, progress: bool = True) -> tuple[Any, list[dict[str, Any]]]:
    """The contact sheet image and one record per cell (label, question, input hash or error)."""
    from PIL import Image, ImageDraw
    from tqdm import tqdm

    from vittle_bench.shifts import parse_condition

    label_w, head_h, pad = 170, 24, 4
    columns = ["clean", *[f"severity {s}" for s in severities]]
    sheet = Image.new("RGB", (label_w + len(columns) * (cell + pad), head_h + (len(rows) + 1) * (cell + pad)),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, title in enumerate(columns):
        draw.text((label_w + c * (cell + pad) + 4, 6), title, fill=(0, 0, 0))

    def tile_of(s: Any, show_question: bool = False) -> Any:
        if not s.images and not show_question:
            return _message_tile("(no image)", cell)
        return _thumbnail(s.images[0] if s.images else None, cell, s.question if show_question else None)

    records = [{"row": "clean", "severity": 0, "label": "clean", "question": sample.question,
                "input_hash": sample.content_hash()}]
    draw.text((6, head_h + cell // 2), "clean", fill=(0, 0, 0))
    sheet.paste(tile_of(sample), (label_w, head_h))
    total = sum(severity in cells for cells in rows.values() for severity in severities)
    with tqdm(total=total, desc="preview", unit="cell", file=sys.stderr, disable=not progress) as bar:
        for r, (row, cells) in enumerate(rows.items(), start=1):
            top = head_h + r * (cell + pad)
            draw.text((6, top + cell // 2), row[:26], fill=(0, 0, 0))
            for c, severity in enumerate(severities, start=1):
                if severity not in cells:
                    continue
                label = cells[severity]
                bar.set_postfix_str(label, refresh=False)
                try:
                    condition = parse_condition(label)
                    shifted = condition.apply(sample, seed)
                    tile = tile_of(shifted, show_question=condition.kind in ("text", "joint"))
                    records.append({"row": row, "severity": severity, "label": label, "question": shifted.question,
                                    "input_hash": shifted.content_hash()})
                except Exception as exc:  # noqa: BLE001 - one failing shift is shown, not fatal
                    tile = _message_tile("error\n(see questions.md)", cell)
                    records.append({"row": row, "severity": severity, "label": label, "question": None,
                                    "error": f"{type(exc).__name__}: {exc}"})
                sheet.paste(tile, (label_w + c * (cell + pad), top))
                bar.update()
    return sheet, records


def _markdown(sample: Any, records: list[dict[str, Any]]) -> str:
    def cell(text: str | None) -> str:
        return (text or "").replace("|", "\\|").replace("\n", " ")

    lines = [f"# Shift preview: {sample.task} / {sample.sample_id}", "",
             "Only the question is perturbed; options and answers stay as they are.", "",
             "| shift | severity | question |", "|---|---|---|"]
    for r in records:
        text = cell(r["question"]) if r.get("error") is None else f"**error**: {cell(r['error'])}"
        lines.append(f"| {r['label']} | {r['severity']} | {text} |")
    if sample.choices:
        lines += ["", "Options (never perturbed): " + "; ".join(sample.choices)]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    from vittle_bench.commands.common import library_bars_off
    from vittle_bench.config import ConfigError

    try:
        severities = sorted({int(s) for s in args.severities.split(",") if s.strip()})
    except ValueError:
        raise ConfigError(f"--severities {args.severities!r}: give integers like 1,3,5") from None
    if not severities or min(severities) < 1:
        raise ConfigError("--severities: positive integers (each shift shows the ones it accepts)")
    if not CELL_SIZES[0] <= args.cell <= CELL_SIZES[1]:
        raise ConfigError(f"--cell {args.cell}: thumbnails are {CELL_SIZES[0]} to {CELL_SIZES[1]} pixels")
    if args.colors is not None and not 2 <= args.colors <= 256:
        raise ConfigError(f"--colors {args.colors}: a palette has 2 to 256 colours")
    shifts = ",".join(_offline_shifts(args.family)) if args.family else args.shifts
    rows = plan_rows(shifts, severities, [Path(p) for p in args.include_path])
    try:  # before the slow part
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--output {args.output} cannot be created ({exc.strerror})") from None
    with library_bars_off():
        sample = _load_sample(args)
        if sample.load_error:
            raise ConfigError(f"sample {args.sample} of {args.task} could not be loaded: {sample.load_error}")
        sheet, records = render_sheet(sample, rows, severities, args.seed, args.cell)
    written = [args.output / "contact_sheet.png", args.output / "questions.md", args.output / "preview.json"]
    if args.colors is not None:
        from PIL import Image

        sheet = sheet.quantize(args.colors, method=Image.Quantize.FASTOCTREE)
    sheet.save(written[0], optimize=True)
    written[1].write_text(_markdown(sample, records))
    written[2].write_text(json.dumps({"sample": sample.sample_id, "seed": args.seed, "cells": records}, indent=1,
                                     ensure_ascii=False))
    errors = sum("error" in r for r in records)
    print(f"{len(records) - 1} shifted cells ({errors} errors) -> {', '.join(str(p) for p in written)}")
    return 0
