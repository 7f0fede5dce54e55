"""The one error of the StylEx package: a bad input, refused before any work, naming the fix."""

from __future__ import annotations


class StylexInputError(ValueError):
    """A StylEx input (classifier, preprocessing, data, settings) that cannot work; says the fix."""
