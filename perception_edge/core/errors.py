"""Error types with messages meant for users: one line, says what is wrong and with what."""


class PerceptionError(Exception):
    """Base class: the CLI prints these as one line, nodes report them in /diagnostics."""


class InputError(PerceptionError, ValueError):
    """An image, message or tensor that cannot be processed (wrong size, encoding, data)."""


class ModelError(PerceptionError):
    """A model file that is missing, corrupt, or whose inputs/outputs fit no supported layout."""


class ConfigError(PerceptionError, ValueError):
    """A parameter or configuration file value that is invalid."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
