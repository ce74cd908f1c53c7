"""The CUDA paths of evaluation and `vittle-bench tune` in one command, for a maintainer with a GPU.

    python benchmarks/gpu_check.py [--steps 20] [--families llava_1_5,qwen2_vl] [--device cpu]

Builds tiny random-weight models of each family locally (tests/tiny_vlms.py; no hub), evaluates each with
`vittle-bench run` in bf16, then tunes it for `--steps` optimiser steps four ways (full fine-tuning and LoRA, each
as the baseline and with the Vittle bottleneck), evaluates every tuned model the same way, and prints per run
the median step time (the steps after the first quarter; wall clock), the peak GPU memory and the bottleneck's
step-time overhead (Vittle / baseline, the same way of training). Full fine-tuning keeps float32 weights under
bf16 autocast, LoRA a bf16 base, as docs/tuning.md recommends. Any failure stops it with the failing run named.

Without CUDA it refuses in one line; `--device cpu` runs the same code on the CPU (no bf16 autocast there, and
no memory figure) so the script itself is tested where no GPU is.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from vittle_bench.commands.common import library_bars_off

# torch, transformers and the tuning code are imported inside the functions: after the one-line refusal, and after
# main() has set the environment they read when imported (HF_HUB_OFFLINE, TQDM_DISABLE, ACCELERATE_USE_CPU).
ROOT = Path(__file__).resolve().parents[1]
WAYS = {"full": None, "lora": "r=16,alpha=32"}


def _tiny_vlms() -> ModuleType:
    """tests/tiny_vlms.py, the test suite's family builders, loaded by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("tiny_vlms", ROOT / "tests" / "tiny_vlms.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_data(root: Path, n: int) -> Path:
    """LLaVA-format rows about built-in scenes (two answers each, from the scene labels)."""
    from vittle_bench.builtin.scenes import draw_scene, scene_rng

    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        scene = draw_scene(scene_rng(7, i))
        scene.image.save(root / "images" / f"{i}.png")
        names = [o.name for o in scene.objects]
        rows.append({"id": i, "image": f"{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nHow many objects are in the image?"},
            {"from": "gpt", "value": str(len(names))},
            {"from": "human", "value": "Describe the objects in the image."},
            {"from": "gpt", "value": " and ".join(names)}]})
    (root / "data.json").write_text(json.dumps(rows))
    return root


def evaluate(model_dir: Path, out: Path, device: str, cache: Path) -> None:
    """`vittle-bench run` in bf16 on a few clean POPE samples; every answer must come back without an error."""
    from vittle_bench.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["run", "--model", f"hf:{model_dir}", "--model-args", f"dtype=bfloat16,device={device}",
                     "--tasks", "shapes_pope_random", "--shifts", "clean", "--limit", "4", "--no-cache",
                     "--output", str(out), "--cache-dir", str(cache)])
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()] if code == 0 else []
    if code != 0 or not samples or any(s["error"] is not None for s in samples):
        raise SystemExit(f"gpu_check: evaluating {model_dir.name} failed (exit {code}): {err.getvalue()[-500:]}")


def tune(checkpoint: Path, data: Path, out: Path, steps: int, baseline: bool, lora: str | None) -> dict:
    """One tune run; its median step time (s) and peak memory (GiB, CUDA only)."""
    import torch

    from vittle_bench.tuning.train import TuneConfig, train

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    cfg = TuneConfig(model=f"hf:{checkpoint}", data=str(data / "data.json"), image_folder=str(data / "images"),
                     output=str(out), baseline=baseline,
                     lora=lora, dtype="bfloat16" if lora else "float32", batch_size=4, max_steps=steps, lr=1e-3,
                     save_every=0)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        train(cfg, log=lambda _: None)
    log = [r for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "event" not in r]
    elapsed = [r["elapsed_s"] for r in log]
    times = [b - a for a, b in zip(elapsed, elapsed[1:])][max(1, steps // 4) - 1:]
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"step_s": statistics.median(times), "peak_gib": peak, "ce": [log[0]["ce"], log[-1]["ce"]]}


def check_family(tiny: ModuleType, family: str, work: Path, data: Path, args: argparse.Namespace) -> list[str]:
    """Build, evaluate, tune four ways and evaluate each result; the printed rows."""
    checkpoint = tiny.build(family, work / family)
    evaluate(checkpoint, work / f"{family}-run", args.device, work / "cache")
    rows, step = [], {}
    for way, lora in WAYS.items():
        for variant in ("baseline", "vittle"):
            out = work / f"{family}-{way}-{variant}"
            try:
                result = tune(checkpoint, data, out, args.steps, variant == "baseline", lora)
            except Exception as exc:  # noqa: BLE001 - the check reports which run failed, then stops
                failure = f"{type(exc).__name__}: {exc}"
                raise SystemExit(f"gpu_check: tune {family} {way} {variant} failed: {failure}") from exc
            evaluate(out, work / f"{out.name}-run", args.device, work / "cache")
            step[way, variant] = result["step_s"]
            peak = f"{result['peak_gib']:.3f}" if result["peak_gib"] is not None else "n/a"
            ratio = f"{result['step_s'] / step[way, 'baseline']:.2f}" if variant == "vittle" else ""
            rows.append(f"{family:<11} {way:<5} {variant:<8} {result['step_s'] * 1000:>9.1f} {peak:>9} {ratio:>8}"
                        f"   {result['ce'][0]:.3f} -> {result['ce'][1]:.3f}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per tune run")
    parser.add_argument("--families", default="llava_1_5,qwen2_vl", help="tests/tiny_vlms.py families")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine (or --device cpu to test the script)",
              file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tiny models are built here; nothing comes from the hub
    os.environ.setdefault("TQDM_DISABLE", "1")  # the table is the output
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "1"  # Accelerate would otherwise take a GPU that is present
    tiny = _tiny_vlms()
    families = args.families.split(",")
    unknown = sorted(set(families) - set(tiny.FAMILIES))
    if unknown:
        print(f"gpu_check: unknown families {unknown}; choose from {sorted(tiny.FAMILIES)}", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"gpu_check on {device}: torch {torch.__version__}, {args.steps} steps per run, batch 4")
    with tempfile.TemporaryDirectory() as tmp, library_bars_off(with_datasets=False):
        work = Path(tmp)
        data = write_data(work / "data", 8)
        print(f"{'family':<11} {'way':<5} {'variant':<8} {'step ms':>9} {'peak GiB':>9} {'overhead':>8}"
              "   CE first -> last")
        for family in families:
            print("\n".join(check_family(tiny, family, work, data, args)), flush=True)
    print("all evaluations (bf16) and tune runs succeeded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
