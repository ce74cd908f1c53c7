"""vittle-bench: how much does a multimodal LLM degrade under shift, and does Vittle make it more robust?"""

__version__ = "0.1.0"
