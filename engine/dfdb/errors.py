"""The errors a user can meet, each naming the problem in one line.

Every failure that is the input's, the output's or the parameters' fault raises a subclass of
:class:`DfdbError`; the command line prints ``dfdb: <message>`` and exits with the class's
``exit_code``. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class DfdbError(Exception):
    """Base of all user-facing errors; ``str(err)`` is the whole one-line message."""

    exit_code = 1
    #: short machine-readable code, also used on the wire (``error.code``)
    code = "error"


class ParamError(DfdbError, ValueError):
    """A parameter value is out of range or of the wrong kind."""

    exit_code = 2
    code = "bad_param"


class InputError(DfdbError):
    """The input is missing, unreadable, corrupt, truncated or has no video stream."""

    exit_code = 3
    code = "bad_input"


class UnsupportedError(InputError):
    """The input or the requested output uses a codec/format this build cannot handle."""

    code = "unsupported"


class OutputError(DfdbError):
    """The output cannot be written (directory missing, not writable, disk full, bad codec)."""

    exit_code = 4
    code = "bad_output"


class ResourceError(DfdbError):
    """Out of memory on the compute device; the message suggests a smaller chunk."""

    exit_code = 5
    code = "out_of_memory"


class Cancelled(DfdbError):
    """The work was cancelled (Ctrl-C, a client disconnect, a queue cancel)."""

    exit_code = 130
    code = "cancelled"
