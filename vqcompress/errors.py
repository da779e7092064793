"""Exceptions raised by vqcompress.

Every error a user can trigger with bad input is a :class:`VQCompressError`, so one
``except VQCompressError`` catches them all.  :class:`InputError` also derives from
``ValueError`` so code written against plain numpy conventions keeps working.
"""


class VQCompressError(Exception):
    """Base class of every error vqcompress raises on purpose."""


class InputError(VQCompressError, ValueError):
    """An argument or an input tensor cannot be used (bad values, dtype, rank or parameter)."""


class FormatError(VQCompressError):
    """A file is corrupt, truncated, or not in the format it claims to be."""


class TooFewValuesError(InputError):
    """A tensor has fewer distinct values (of positive weight) than the codebook has entries.

    Not a fault in the data: ``compress`` stores such tensors raw, with a warning.
    """
