"""User-facing errors.

Anything a user can cause (a missing file, a corrupt wav, an unknown label, a bad option) raises
:class:`SertkError`; the CLI prints its message as one line and exits with status 1, without a
traceback. Programming errors keep their traceback.
"""


class SertkError(Exception):
    """An error caused by the user's input; printed as one line by the CLI."""


class DataError(SertkError):
    """Bad data: an unreadable audio file, an inconsistent data directory, a NaN feature."""
