"""The web report (`vittle-bench report`): see `site.build_report` and docs/report.md."""

DEFAULT_EXAMPLES = 12  # gallery cards per (task, condition, model, direction)
