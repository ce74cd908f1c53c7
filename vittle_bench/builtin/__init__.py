"""The embedded default, self-contained: the built-in world (procedurally drawn, fully labelled scenes and the
questions built from them), the tiny LLaVA served as `builtin:` models, and the recipe that trains it."""
