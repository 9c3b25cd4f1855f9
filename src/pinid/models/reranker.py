"""Beyond the paper: a learned model that re-orders each pin's candidate users, and the
temperature that turns its scores into calibrated probabilities.

The re-ranker is a linear score over standardised candidate features, trained listwise (which of
the pin's candidates is its author?); a pin's candidates are ordered by their scores, and
``softmax(scores / T)`` over the candidates is the answer's probability. Both are plain arrays,
so a model folder stores them without pickle.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator


class Reranker(BaseEstimator):
    """Listwise ranking (a conditional logit): ``P(candidate j) = softmax_j(w . x_j)`` over each
    pin's candidates, ``w`` fitted by L2-penalised maximum likelihood of the true author
    (listwise: it ranked openclipart's test pins better than a pointwise logistic regression on
    the same features).

    Parameters
    ----------
    alpha : float
        Weight of the L2 penalty on ``w``.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        ``w``, over standardised features.
    mean_, scale_ : ndarray of shape (n_features,)
        The standardisation, from the training candidates.
    """

    def __init__(self, alpha: float = 1e-3) -> None:
        self.alpha = alpha

    def fit(self, features: np.ndarray, truth: np.ndarray) -> Reranker:
        """``features``: (n * k, d), pin-major; ``truth``: each pin's author position among its
        k candidates, -1 when absent (such pins are left out: no candidate is right)."""
        n = len(truth)
        mean = features.mean(axis=0)
        scale = features.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        Z = ((features - mean) / scale).reshape(n, -1, features.shape[1])
        found = truth >= 0
        Z, t = Z[found], truth[found]
        rows = np.arange(len(t))

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            log_p = log_softmax(Z @ w, axis=1)
            residual = -np.exp(log_p)
            residual[rows, t] += 1.0
            value = -log_p[rows, t].mean() + self.alpha * (w @ w) / 2
            gradient = -np.einsum("nk,nkd->d", residual, Z) / max(len(t), 1) + self.alpha * w
            return float(value), gradient

        start = np.zeros(features.shape[1])
        self.coef_ = minimize(loss, start, jac=True, method="L-BFGS-B").x
        self.mean_, self.scale_ = mean, scale
        return self

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean_) / self.scale_) @ self.coef_


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """T minimising the negative log-likelihood of ``softmax(logits / T)``.

    ``truth`` is each pin's position of its author among the candidates, -1 when the author is
    not among them (those pins carry no information about T and are left out).
    """
    found = truth >= 0
    if not found.any():
        return 1.0
    z, t = logits[found], truth[found]

    def nll(log_t: float) -> float:
        return -float(log_softmax(z / np.exp(log_t), axis=1)[np.arange(len(t)), t].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded").x))


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(logits / temperature, axis=1)
