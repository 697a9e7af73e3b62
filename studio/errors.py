"""Errors a user can act on. Fronts print `str(err)` as one line, never a traceback."""


class StudioError(Exception):
    """Base of every error the studio raises on purpose."""


class UnknownVariant(StudioError, KeyError):
    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0])


class WeightsNotInstalled(StudioError):
    """A variant's weights are not in the cache; the message gives the command to fetch them."""


class NotBuilt(WeightsNotInstalled):
    """A derived build that has not been built here; the message gives `studio build ID`."""


class WeightsFetchError(StudioError):
    """Every source of a weights file failed; the message lists each one and why."""


class ModelError(StudioError):
    """A model failed to load or to run."""


class ModelLoadError(ModelError):
    """A model could not be loaded at all (as opposed to failing on one image)."""


class ImageError(StudioError, ValueError):
    """An input image (or mask) that cannot be used, with the reason in plain words."""
