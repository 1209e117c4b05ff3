"""Errors that reach users as one line, without a traceback."""


class BodyscriptError(Exception):
    """An expected failure with a one-line, user-facing reason (bad input, missing model, ...)."""

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


class ModelError(BodyscriptError):
    """The pose model cannot be fetched, or its bytes are not the expected ones."""


class VideoError(BodyscriptError):
    """A video cannot be opened, probed or decoded."""


class SourceChanged(VideoError):
    """The source object is no longer the version the run was launched for; its new version has its own run."""
