"""The error a user's mistake raises, in a leaf module every layer may import."""


class ConfigError(ValueError):
    """A bad task, suite, shift, model or file specification: the CLI prints it as one line and exits 2."""
