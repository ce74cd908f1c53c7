"""Generation throughput of the `hf:` adapter: batched, left-padded greedy generation vs a batch-1 per-sample
loop (what lmms-eval does by default), side by side in one process on the same requests.

    python benchmarks/generation_throughput.py [--samples 256] [--batch-size 32] [--threads 1] [--repeats 2]

Model: the built-in `builtin:tiny-llava` when its weights are installed; otherwise the same architecture with
random weights built in-process and saved like any checkpoint (the script says which one it used).
Requests: the built-in POPE and multiple-choice questions (clean), so prompts differ in length and the
batches really are padded. Both sides use the same adapter and the same requests; the only difference is
the batch size. Each side is timed `--repeats` times, alternating, after one warm-up call, and the best
time is kept (the machine may be shared). The answers of the two sides are compared one by one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_benchmark_model(tmp: Path):
    """(model, description): the built-in checkpoint if present, else a random one of the same architecture."""
    import torch

    from vittle_bench.builtin.model import weights_dir
    from vittle_bench.models.hf import HFModel

    if (weights_dir("tiny-llava") / "model.safetensors").is_file():
        return HFModel("builtin:tiny-llava", str(weights_dir("tiny-llava"))), "builtin:tiny-llava (committed weights)"
    from vittle_bench.builtin.recipe import Recipe
    from vittle_bench.builtin.tiny_llava import build_model, build_processor

    torch.manual_seed(0)
    processor = build_processor()
    model = build_model(processor, text_layers=Recipe().text_layers)  # the built-in architecture, random weights
    path = tmp / "tiny-llava-random"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return HFModel("hf:tiny-llava-random", str(path)), "tiny LLaVA, built-in architecture, random weights " \
                                                       "(builtin:tiny-llava weights not installed)"


def benchmark_requests(cache: Path, n: int):
    from vittle_bench.adapters import TASK_ADAPTERS
    from vittle_bench.config import resolve_tasks
    from vittle_bench.data.sources import load_samples

    requests = []
    specs = resolve_tasks("shapes_pope_random,shapes_mc")
    for spec in specs:
        adapter = TASK_ADAPTERS.get(spec.adapter)(**spec.adapter_args)
        requests += [adapter.build_request(s) for s in load_samples(spec, cache, (n + 1) // len(specs))]
    return requests[:n]


def timed(fn) -> tuple[float, list[str]]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the machine may be shared)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from vittle_bench.builtin.world import ensure_world

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        ensure_world(cache)
        requests = benchmark_requests(cache, args.samples)
        model, description = load_benchmark_model(Path(tmp))

        def batched() -> list[str]:
            return [a for i in range(0, len(requests), args.batch_size)
                    for a in model.generate(requests[i:i + args.batch_size])]

        def one_by_one() -> list[str]:
            return [model.generate([r])[0] for r in requests]

        model.generate(requests[:args.batch_size])  # warm-up (allocator, kernels)
        model.generate(requests[:1])
        times: dict[str, list[float]] = {"batched": [], "batch-1 loop": []}
        answers: dict[str, list[str]] = {}
        for _ in range(args.repeats):
            for name, fn in (("batched", batched), ("batch-1 loop", one_by_one)):
                seconds, answers[name] = timed(fn)
                times[name].append(seconds)

    params = sum(p.numel() for p in model.model.parameters())
    same = sum(a == b for a, b in zip(answers["batched"], answers["batch-1 loop"]))
    best = {k: min(v) for k, v in times.items()}
    print(f"model: {description}, {params / 1e6:.2f} M parameters, {model.fingerprint_info['dtype']}, "
          f"torch threads {args.threads}, device {model.model.device}")
    print(f"requests: {len(requests)} (built-in POPE + multiple choice, max_new_tokens "
          f"{sorted({r.max_new_tokens for r in requests})}), best of {args.repeats} timed runs each\n")
    print(f"| {'mode':<24} | {'seconds':>8} | {'samples/s':>10} |")
    print(f"|{'-' * 26}|{'-' * 10}|{'-' * 12}|")
    print(f"| {'batch-1 loop':<24} | {best['batch-1 loop']:8.2f} | {len(requests) / best['batch-1 loop']:10.1f} |")
    label = f"batched (batch {args.batch_size})"
    print(f"| {label:<24} | {best['batched']:8.2f} | {len(requests) / best['batched']:10.1f} |")
    print(f"\nspeed-up: {best['batch-1 loop'] / best['batched']:.1f}x; identical answers: {same}/{len(requests)}")
    print("all timings (s): " + "; ".join(f"{k} {', '.join(f'{t:.2f}' for t in v)}" for k, v in times.items()))


if __name__ == "__main__":
    main()
