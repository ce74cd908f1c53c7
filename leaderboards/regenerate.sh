#!/usr/bin/env bash
# Regenerate the embedded default's leaderboard from a real run: the three built-in models (baseline,
# Vittle(F), Vittle(L)) on the built-in tasks under the `quick` shift suite, with EMI, seed 0.
# Usage: bash leaderboards/regenerate.sh   (from the repository root; about 10 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=leaderboards/builtin
vittle-bench run --model builtin:tiny-llava,builtin:tiny-llava-vittle-f,builtin:tiny-llava-vittle-l \
  --tasks builtin --shifts quick --seed 0 --batch-size 64 --metrics emi --emi-encoders effnet-lite0,minilm-l6 \
  --output "$out/run" --fresh
for fmt in csv markdown latex html; do
  vittle-bench leaderboard "$out/run" --format "$fmt" --output "$out/leaderboard.$fmt"
done
for variant in f l; do
  vittle-bench compare "$out/run" "$out/run" --model-a builtin:tiny-llava --model-b builtin:tiny-llava-vittle-$variant \
    --format markdown --output "$out/compare_baseline_vs_vittle_$variant.md"
done
vittle-bench leaderboard "$out/run" --format markdown --plots "$out/plots" > /dev/null
for metric in emi emid emid_bound; do  # a base name matches the run's one estimator's qualified key
  vittle-bench leaderboard "$out/run" --metric "$metric" --group-by shift_kind \
    --format markdown --output "$out/leaderboard_$metric.markdown"
done
