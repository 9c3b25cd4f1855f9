"""pinid's own error types: expected faults the CLI reports as one line, no traceback."""


class PinidError(Exception):
    """A fault in the user's input or environment that pinid explains in one line."""


class DataError(PinidError):
    """A dataset, manifest or image that cannot be used; the message names the file (and line)."""


class ModelFileError(PinidError):
    """A model folder that is missing, incomplete, tampered with or of an unknown schema."""
