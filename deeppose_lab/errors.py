"""The package's own errors: raised on purpose, about something a user can fix (a file, a setting, a run folder).

The command line prints a ``DeepPoseError`` as one line and exits with status 2, and so an ``OSError`` (the
machine refusing: a full disk, a read-only folder). Anything else (a plain ``ValueError`` from numpy, an
``AssertionError``) is a bug in the package and keeps its traceback.
"""

from __future__ import annotations


class DeepPoseError(Exception):
    """Base class of every error the package raises on purpose; the message says what is wrong and where."""


class ConfigError(DeepPoseError, ValueError):
    """A profile field, a ``--set`` or another command-line value that cannot be used."""


class OutputError(DeepPoseError, OSError):
    """A folder the package must write to cannot be made or written (read-only, a file in the way, no space)."""


class RunError(DeepPoseError, RuntimeError):
    """A run directory is missing, locked, or was made with other settings; or its data cannot be split."""
