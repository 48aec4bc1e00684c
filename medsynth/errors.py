"""The one exception type users see for bad input."""

from __future__ import annotations


class MedsynthError(Exception):
    """Bad input or an impossible request, with a message that names the file and the problem.

    The CLI prints the message and exits with status 1 (2 for a :class:`ConfigError`) instead of a traceback.
    """


class DataError(MedsynthError):
    """A data file or manifest is unreadable or inconsistent."""


class ConfigError(MedsynthError):
    """A config file or override is invalid (unknown key, wrong type, impossible value)."""


class OutputError(MedsynthError):
    """An output location cannot be written safely (it holds files medsynth did not write, or is in the way)."""
