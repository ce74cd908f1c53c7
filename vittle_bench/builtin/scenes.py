"""Seeded scene generator that draws shapes on varied backgrounds and labels them in COCO format.

Every object is a COCO category "<colour> <shape>" (25 categories), so the POPE builder and any COCO
tool read the world exactly as they read COCO val2014. Object size (small / large) is an attribute.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "plus", "ring")
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
    "purple": (140, 40, 180),
}
CATEGORIES = tuple(f"{colour} {shape}" for shape in SHAPES for colour in COLOURS)
IMAGE_SIZE = 56
MAX_OBJECTS = 6
# Fractions of the image side. Smaller objects (radius < 6 px at 8 px patches) left a tiny model unable to
# tell shapes apart: it answered POPE by colour alone.
SMALL_RADIUS = (0.11, 0.13)
LARGE_RADIUS = (0.15, 0.17)


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str  # "small" / "large"
    cx: float
    cy: float
    radius: float

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    def polygon(self) -> list[tuple[float, float]]:
        """Outline used both to draw the object and as its COCO segmentation."""
        cx, cy, r = self.cx, self.cy, self.radius
        if self.shape in ("circle", "ring"):
            return [(cx + r * math.cos(2 * math.pi * i / 24), cy + r * math.sin(2 * math.pi * i / 24))
                    for i in range(24)]
        if self.shape == "square":
            q = r * 0.85
            return [(cx - q, cy - q), (cx + q, cy - q), (cx + q, cy + q), (cx - q, cy + q)]
        if self.shape == "triangle":
            return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
        w = r * 0.35  # plus
        return [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w),
                (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w),
                (cx - r, cy - w), (cx - w, cy - w)]


@dataclass(frozen=True)
class Scene:
    image: Image.Image
    objects: tuple[SceneObject, ...]


def scene_rng(seed: int, index: int) -> random.Random:
    """Each scene has its own RNG, so scene i is the same whatever else was generated before it."""
    return random.Random(seed * 1_000_003 + index)


def _place_objects(rng: random.Random, count: int, side: int) -> list[SceneObject]:
    objects: list[SceneObject] = []
    for _ in range(count):
        for _attempt in range(80):
            size = rng.choice(("small", "large"))
            lo, hi = SMALL_RADIUS if size == "small" else LARGE_RADIUS
            r = rng.uniform(lo, hi) * side
            cx, cy = rng.uniform(r + 1, side - r - 1), rng.uniform(r + 1, side - r - 1)
            if all((cx - o.cx) ** 2 + (cy - o.cy) ** 2 > (r + o.radius + 1) ** 2 for o in objects):
                objects.append(SceneObject(rng.choice(SHAPES), rng.choice(list(COLOURS)), size, cx, cy, r))
                break
    return objects


def _background(rng: random.Random, side: int) -> np.ndarray:
    base = np.array([rng.randint(185, 250)] * 3, dtype=np.float64) + np.array([rng.randint(-12, 12) for _ in range(3)])
    bg = np.ones((side, side, 3)) * base
    style = rng.random()
    if style < 0.35:  # light noise texture
        bg += np.random.default_rng(rng.getrandbits(32)).normal(0, 6, (side, side, 1))
    elif style < 0.6:  # soft gradient
        ramp = np.linspace(-14, 14, side)
        bg += (ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None])
    return np.clip(bg, 0, 255).astype(np.uint8)


def draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, fill: tuple[int, ...] | int) -> None:
    r = obj.radius
    if obj.shape == "circle":
        draw.ellipse([obj.cx - r, obj.cy - r, obj.cx + r, obj.cy + r], fill=fill)
    elif obj.shape == "ring":
        draw.ellipse([obj.cx - r, obj.cy - r, obj.cx + r, obj.cy + r], outline=fill, width=max(2, round(r * 0.38)))
    else:
        draw.polygon(obj.polygon(), fill=fill)


def label_map(scene: Scene) -> np.ndarray:
    """Per-pixel category index (0 = background, i + 1 = CATEGORIES[i]): dense labels for pre-training."""
    labels = Image.new("L", scene.image.size, 0)
    draw = ImageDraw.Draw(labels)
    for obj in scene.objects:
        draw_object(draw, obj, CATEGORIES.index(obj.name) + 1)
    return np.asarray(labels, dtype=np.int64)


def draw_scene(rng: random.Random, side: int = IMAGE_SIZE, max_objects: int = MAX_OBJECTS) -> Scene:
    objects = _place_objects(rng, rng.randint(1, max_objects), side)
    image = Image.fromarray(_background(rng, side))
    draw = ImageDraw.Draw(image)
    for obj in objects:
        draw_object(draw, obj, tuple(int(np.clip(c + rng.randint(-20, 20), 0, 255)) for c in COLOURS[obj.colour]))
    return Scene(image, tuple(objects))


def coco_annotations(scenes: list[tuple[str, Scene]]) -> dict:
    """COCO instances dict for (file_name, scene) pairs; attributes kept as extra annotation fields."""
    categories = [{"id": i + 1, "name": name, "supercategory": name.split()[1]} for i, name in enumerate(CATEGORIES)]
    cat_id = {c["name"]: c["id"] for c in categories}
    images: list[dict] = []
    annotations: list[dict] = []
    for image_id, (file_name, scene) in enumerate(scenes, start=1):
        w, h = scene.image.size
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        for obj in scene.objects:
            poly = obj.polygon()
            xs, ys = [p[0] for p in poly], [p[1] for p in poly]
            area = math.pi * obj.radius**2 if obj.shape in ("circle", "ring") else _shoelace(poly)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cat_id[obj.name],
                "bbox": [round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2),
                         round(max(ys) - min(ys), 2)],
                "area": round(area, 2), "iscrowd": 0,
                "segmentation": [[round(v, 2) for p in poly for v in p]],
                "attributes": {"shape": obj.shape, "colour": obj.colour, "size": obj.size},
            })
    return {"info": {"description": "vittle-bench builtin:shapes"}, "images": images,
            "annotations": annotations, "categories": categories}


def _shoelace(poly: list[tuple[float, float]]) -> float:
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]))) / 2


def write_world_images(directory: Path, count: int, seed: int) -> Path:
    """Draw `count` scenes into directory/images and write directory/annotations.json; returns the latter."""
    (directory / "images").mkdir(parents=True, exist_ok=True)
    scenes = []
    for i in range(count):
        scene = draw_scene(scene_rng(seed, i))
        file_name = f"shapes_{i:05d}.png"
        scene.image.save(directory / "images" / file_name)
        scenes.append((file_name, scene))
    path = directory / "annotations.json"
    path.write_text(json.dumps(coco_annotations(scenes)))
    return path
