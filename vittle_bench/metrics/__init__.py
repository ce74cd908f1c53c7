"""Metric definitions and statistics (bootstrap CIs, paired tests)."""
