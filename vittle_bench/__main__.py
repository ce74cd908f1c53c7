"""`python -m vittle_bench` (also what `accelerate launch -m vittle_bench` runs)."""

from vittle_bench.cli import main

raise SystemExit(main())
