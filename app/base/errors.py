"""Errors a user can cause or meet; pages turn them into friendly messages."""


class LensError(Exception):
    """Base class: the message is written for the person using the app."""


class ImageError(LensError):
    """The uploaded bytes are not an image we can use."""


class WeightsUnavailableError(LensError):
    """Pretrained weights could not be loaded (no internet, bad file, ...)."""


class DatasetMissingError(LensError):
    """A data set the feature needs is not in the project's data directory."""


class Cancelled(LensError):
    """The person stopped a long computation; whatever it had begun is thrown away.

    Long computations take a `progress(done, total)` callback (app/serving/progress.py) and
    this is how it stops them: the callback raises Cancelled (app/serving/jobs.py `Job.report`
    does it for queued jobs), the exception unwinds the computation, and nothing
    shared is left changed.
    """
