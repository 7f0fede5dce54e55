"""Images of any bit depth → uint8 (0–255), by the range their type stands for.

Every image the library reads (files of a dataset, images given to
:func:`~scouter.data.preprocess`) becomes uint8 here, by one rule:

=====================================  =========================================================
PIL mode / numpy dtype                 read as
=====================================  =========================================================
8-bit modes (``1 L P RGB RGBA LA`` …)  as they are (``1`` → 0/255, alpha dropped, ``P`` expanded)
``uint8``                              as it is
``I;16`` ``I;16B`` ``I;16L``,          0–65535 (16 bits), scaled to 0–255: ``round(v / 257)``
``uint16``
``F``, ``float16/32/64``               0.0–1.0, scaled to 0–255: ``round(v * 255)``; values
                                       outside 0–1 (or NaN) are refused, with the fix
``I`` (32-bit signed), other ints      no fixed range: accepted only where every value lies in
                                       0–255, else refused, with the fix
``bool``                               False → 0, True → 255
=====================================  =========================================================

Why: PIL's own ``convert("L")`` clips 16-bit values to 255 (a near-white image) and reads floats
as 0–255 (a near-black one); both would give confident predictions of the wrong image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: PIL modes holding 16-bit unsigned samples.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageValueError(ValueError):
    """An image whose pixel values have no clear 0–255 reading (the message says how to fix it)."""


def _range(values: np.ndarray) -> str:
    return f"{values.min():g}..{values.max():g}"


def array_to_uint8(array: np.ndarray, *, what: str = "the image") -> np.ndarray:
    """``array`` as uint8 by its dtype's range (the table in this module's docstring).

    Raises:
        ImageValueError: a float image outside 0–1 (or NaN), an integer image of no fixed range
            with values outside 0–255, or a dtype that is no image; naming ``what`` and the fix.
    """
    array = np.asarray(array)
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if kind == "b":
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        # round(v / 257): 0 -> 0, 257*k -> k, 65535 -> 255 (integer arithmetic, exact).
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if kind == "f":
        if array.size and not np.isfinite(array).all():
            raise ImageValueError(
                f"{what} has NaN or infinite pixel values — replace them (e.g. np.nan_to_num) "
                "before passing it"
            )
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ImageValueError(
                f"{what} is a float image with values {_range(array)}, but float images are read "
                "as 0.0–1.0 — if it holds 0–255 values pass (values).astype(np.uint8) (or "
                "divide by 255); otherwise rescale it to 0–1"
            )
        return np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    if kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ImageValueError(
                f"{what} holds {array.dtype} values {_range(array)}, which have no fixed range "
                "to read them by — convert it to 8 bits yourself: for 16-bit data "
                "(values / 257).round().astype(np.uint8), for 0–255 data values.astype(np.uint8)"
            )
        return array.astype(np.uint8)
    raise ImageValueError(
        f"{what} has dtype {array.dtype}, which is no image type — pass uint8 (0–255), uint16 "
        "(0–65535) or float (0.0–1.0) pixels"
    )


def pil_to_uint8(image: Any, mode: str, *, what: str = "the image") -> np.ndarray:
    """A PIL image → ``(H, W)`` (``mode="L"``) or ``(H, W, 3)`` (``mode="RGB"``) uint8.

    16-bit, 32-bit and float modes are converted by their range (this module's table), not by
    PIL's ``convert``, which clips them; 8-bit modes go through ``convert(mode)``.

    Raises:
        ImageValueError: see :func:`array_to_uint8`.
    """
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    if image.mode in (*SIXTEEN_BIT_MODES, "I", "F"):
        grey = array_to_uint8(np.asarray(image), what=f"{what} (PIL mode {image.mode})")
        return grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert(mode))
