"""The principal axes of a few wide rows, from their Gram matrix.

A model trained on a few pins has far fewer rows than image features (2272): the eigenvectors
of ``SᵀS`` with non-zero eigenvalues are ``Sᵀu / √λ`` for the eigenpairs ``(λ, u)`` of the
small ``SSᵀ``, without decomposing a features-by-features matrix.
"""

from __future__ import annotations

import numpy as np

from pinid.models.threads import one_thread

RELATIVE_FLOOR = 1e-9
"""Eigenvalues below this share of the largest are taken as zero (their axes are noise)."""


def principal_axes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``SᵀS``'s non-zero eigenvalues (r,), largest first, and unit eigenvectors (features, r),
    float64, for ``S`` = ``rows`` (n, features), the same on any number of threads."""
    S = np.asarray(rows, dtype=np.float64)
    with one_thread():
        values, vectors = np.linalg.eigh(S @ S.T)
        keep = values > RELATIVE_FLOOR * values.max(initial=0.0)
        values, vectors = values[keep][::-1], vectors[:, keep][:, ::-1]
        return values, (S.T @ vectors) / np.sqrt(values)
