"""LLaVA-Bench-COCO's judge context, as LLaVA's visual review script builds it.

`llava/eval/eval_gpt_review_visual.py` (LLaVA; the Vittle evaluation runs the same script) shows the judge
five COCO captions and every object's box for the image, from `llava/eval/table/caps_boxes_coco2014_val_80.jsonl`:
    [Context]\\n{captions, one per line}\\n\\n{"category: [x1, y1, x2, y2]", one per line}\\n\\n[Question] ...
The hub copy (lmms-lab/llava-bench-coco) carries a caption but no boxes, so the table ships with this package
(`caps_boxes_coco2014_val_80.jsonl`, copied unchanged from haotian-liu/LLaVA at commit c121f04, Apache-2.0) and
the row format `llava_visual_context` sets a row's context from it by COCO image id.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib.resources import files
from typing import Any

from vittle_bench.data.rows import ROW_FORMATS

TABLE = "caps_boxes_coco2014_val_80.jsonl"


@lru_cache(maxsize=1)
def llava_visual_contexts() -> dict[int, str]:
    """COCO image id -> the judge context LLaVA's script writes for it."""
    table = files("vittle_bench.data.llava_bench").joinpath(TABLE).read_text()
    contexts = {}
    for line in filter(None, table.splitlines()):
        entry = json.loads(line)
        captions = "\n".join(entry["captions"])
        boxes = "\n".join(f'{instance["category"]}: {instance["bbox"]}' for instance in entry["instances"])
        contexts[int(entry["id"])] = f"{captions}\n\n{boxes}"
    return contexts


def coco_image_id(value: Any) -> int:
    """441147 from '000000441147', 'COCO_val2014_000000441147.jpg' or 441147 (the last run of digits)."""
    digits = re.findall(r"\d+", str(value))
    if not digits:
        raise ValueError(f"no COCO image id in {value!r}")
    return int(digits[-1])


@ROW_FORMATS.register("llava_visual_context")
def llava_visual_context_row(fields: dict[str, Any], row: dict[str, Any], index: int) -> dict[str, Any]:
    """The judge context of LLaVA-Bench-COCO: captions and boxes of the row's image (`meta: image_id`)."""
    image_id = coco_image_id(fields["meta"].get("image_id"))
    context = llava_visual_contexts().get(image_id)
    if context is None:
        raise ValueError(f"COCO image {image_id} is not in LLaVA's caption-and-box table ({TABLE})")
    fields["context"] = context
    return fields
