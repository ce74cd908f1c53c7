"""`vittle-bench tune`: fine-tune any HF vision-language model with the Vittle bottleneck attached, on
LLaVA-format instruction data, through accelerate. The bottleneck itself is `vittle_bench.vittle`."""
