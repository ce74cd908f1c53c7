"""Cost of the Vittle bottleneck, measured side by side in one process on a tiny LLaVA.

    python benchmarks/vittle_overhead.py [--hidden 128 --text-layers 4 --batch 16 --rounds 7 --device cpu]

Two copies of the same random-weight LLaVA (the built-in architecture by default), one with the bottleneck
attached, run the tune loop's training step (forward, CE + KL, backward, AdamW; vision tower frozen) and
greedy generation (eval mode, deterministic bottleneck) on the same batches. Timings alternate between the
two models round by round and report medians, so a busy shared machine slows both alike (on CPU the clock
is the process's CPU time).
Goals: training step <= 1.10x (the paper reports ~1.20x), generation <= 1.03x.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch


def scene_items(n: int, turns: int = 3) -> list[dict]:
    """Dataset-style items (messages + image) about built-in scenes, answers from their labels."""
    from vittle_bench.builtin.scenes import draw_scene, scene_rng

    items = []
    for i in range(n):
        scene = draw_scene(scene_rng(11, i))
        names = [o.name for o in scene.objects]
        qa = [("How many objects are in the image?", str(len(names))), ("Describe the objects in the image.",
              " and ".join(names)), ("Is there a red circle in the image?", "Yes" if "red circle" in names else "No")]
        messages = []
        for k, (q, a) in enumerate(qa[:turns]):
            content = ([{"type": "image"}] if k == 0 else []) + [{"type": "text", "text": q}]
            messages += [{"role": "user", "content": content},
                         {"role": "assistant", "content": [{"type": "text", "text": a}]}]
        items.append({"messages": messages, "images": [scene.image]})
    return items


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> float:
    """GPU: wall time between synchronisations. CPU: the process's CPU time, which other jobs on a shared
    machine inflate far less than wall time (they steal the core, not our instructions)."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    sync(device)
    start = clock()
    fn()
    sync(device)
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--vision-layers", type=int, default=3)
    parser.add_argument("--text-layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per model (after warm-up)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--prior", choices=("fixed", "learnable"), default="learnable")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (shared machines: keep it small)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from vittle_bench.builtin.tiny_llava import build_model, build_processor
    from vittle_bench.tuning.data import ConversationCollator
    from vittle_bench.vittle import VittleConfig, attach_bottleneck, count_bottleneck_parameters

    torch.manual_seed(0)
    processor = build_processor()
    base = build_model(processor, hidden=args.hidden, vision_layers=args.vision_layers, text_layers=args.text_layers,
                       heads=args.heads)
    models = {"baseline": base, "vittle": copy.deepcopy(base)}
    handle = attach_bottleneck(models["vittle"], VittleConfig(prior=args.prior))
    handle.set_progress(0.5)
    optimizers = {}
    for name, model in models.items():
        model.to(device)
        for p in model.model.vision_tower.parameters():
            p.requires_grad_(False)
        optimizers[name] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    items = scene_items(args.batch)
    train_batch = {k: v.to(device) for k, v in ConversationCollator(processor)(items).items()}
    processor.tokenizer.padding_side = "left"
    prompts = [processor.apply_chat_template(it["messages"][:1], add_generation_prompt=True) for it in items]
    gen_batch = processor(text=prompts, images=[it["images"][0] for it in items], padding=True,
                          return_tensors="pt").to(device)

    def train_steps(name: str) -> None:
        model, opt = models[name], optimizers[name]
        model.train()
        for _ in range(args.steps):
            loss = model(**train_batch).loss
            if name == "vittle":
                loss = loss + handle.regularizer()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    @torch.inference_mode()
    def generate(name: str) -> None:
        model = models[name]
        model.eval()
        model.generate(**gen_batch, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)

    results: dict[str, dict[str, list[float]]] = {"train": {"baseline": [], "vittle": []},
                                                   "generate": {"baseline": [], "vittle": []}}
    for phase, fn, per in (("train", train_steps, args.steps), ("generate", generate, 1)):
        for r in range(args.warmup + args.rounds):
            order = ("baseline", "vittle") if r % 2 == 0 else ("vittle", "baseline")
            for name in order:
                seconds = timed(functools.partial(fn, name), device) / per
                if r >= args.warmup:
                    results[phase][name].append(seconds)

    n_params = sum(p.numel() for p in base.parameters())
    extra = count_bottleneck_parameters(args.hidden, 2, args.prior)
    print(f"tiny LLaVA: hidden {args.hidden}, {args.vision_layers} vision + {args.text_layers} text layers, "
          f"{n_params:,} parameters (+{extra:,} = {100 * extra / n_params:.1f}% for Vittle-{args.prior}); "
          f"batch {args.batch}, {train_batch['input_ids'].shape[1]} tokens/row, device {device}, "
          f"{args.threads} thread(s); median of {args.rounds} rounds after {args.warmup} warm-up")
    # the ratio of medians is the headline; the ratio of fastest rounds shows how much is load noise
    print(f"{'':24}{'baseline':>12}{'vittle':>12}{'ratio':>9}{'(fastest)':>11}{'goal':>8}")
    for phase, label, goal in (("train", "train step (s)", 1.10),
                               ("generate", f"generate {args.new_tokens} tok (s)", 1.03)):
        b, v = statistics.median(results[phase]["baseline"]), statistics.median(results[phase]["vittle"])
        fastest = min(results[phase]["vittle"]) / min(results[phase]["baseline"])
        ok = "ok" if v / b <= goal else "MISSED"
        print(f"{label:24}{b:12.4f}{v:12.4f}{v / b:8.3f}x{fastest:10.3f}x{goal:7.2f}x {ok}")


if __name__ == "__main__":
    main()
