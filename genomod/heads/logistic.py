"""Standardized L2 logistic regression head (scikit-learn fit, NumPy prediction)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from genomod.heads.base import Head, register_head, standardize_params


@register_head
@dataclass
class LogisticHead(Head):
    """Logistic regression on standardized features; params: C (inverse L2 strength), max_iter."""

    kind: str = "logistic"

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogisticHead:
        """Fit scaler and logistic regression (lbfgs, class weights uniform); returns self."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        X, y = self._check_fit_input(X, y)
        C = float(self.params.setdefault("C", 1.0))
        max_iter = int(self.params.setdefault("max_iter", 2000))
        mean, scale = standardize_params(X)
        model = LogisticRegression(C=C, max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit((X - mean) / scale, y)
        self.arrays = {
            "mean": mean, "scale": scale,
            "W0": model.coef_.astype(np.float64).T.copy(), "b0": model.intercept_.astype(np.float64).copy(),
        }
        self.meta.update(n_layers=1, n_train=int(y.size), n_pos=int(y.sum()), n_features=int(X.shape[1]),
                         n_iter=int(np.max(model.n_iter_)))
        return self

    def _logits(self, h: np.ndarray) -> np.ndarray:
        """One affine layer: ``h @ W0 + b0``."""
        return h @ self.arrays["W0"] + self.arrays["b0"]
