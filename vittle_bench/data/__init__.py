"""Datasets: the embedded procedural world and builders (POPE) that read COCO-format annotation files."""
