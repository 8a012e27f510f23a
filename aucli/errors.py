"""Exceptions the library raises for users' mistakes.

The CLI turns every ``AucliError`` into one plain ``Error: ...`` line and a non-zero exit; anything
else is a bug and keeps its traceback. Library code raises these with messages that say what was
expected, what was found and what to do.
"""

from __future__ import annotations


class AucliError(Exception):
    """A problem the user can fix: bad input, missing file, incompatible store or model."""

    exit_code = 1


class UsageError(AucliError):
    """An invalid argument or option value (exit code 2, like click's own usage errors)."""

    exit_code = 2


class UnknownAUError(UsageError):
    """An Action Unit name that cannot be parsed or is not part of the AU set in use."""


class StoreError(AucliError):
    """The HDF5 store is missing, unreadable, of another schema version, or lacks what is asked."""


class ModelError(AucliError):
    """A model, backbone, weight file or checkpoint is missing or does not fit."""


class MediaError(AucliError):
    """A video, image or frame folder cannot be read."""


class LabelFormatError(AucliError):
    """A label file does not follow its declared format."""


class TrainingDivergedError(AucliError):
    """The training loss became NaN or infinite: the run stops before it saves broken weights."""
