"""Small multi-layer perceptron head (scikit-learn MLPClassifier fit, NumPy prediction)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from genomod.heads.base import Head, register_head, standardize_params


@register_head
@dataclass
class MLPHead(Head):
    """ReLU MLP on standardized features; params: hidden (list of widths), alpha (L2), max_iter, seed."""

    kind: str = "mlp"

    def fit(self, X: np.ndarray, y: np.ndarray) -> MLPHead:
        """Fit scaler and MLP (Adam, fixed seed, no early stopping); returns self."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        X, y = self._check_fit_input(X, y)
        hidden = tuple(int(h) for h in self.params.setdefault("hidden", [64]))
        alpha = float(self.params.setdefault("alpha", 1e-2))
        max_iter = int(self.params.setdefault("max_iter", 300))
        seed = int(self.params.setdefault("seed", 0))
        mean, scale = standardize_params(X)
        model = MLPClassifier(hidden_layer_sizes=hidden, alpha=alpha, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit((X - mean) / scale, y)
        self.arrays = {"mean": mean, "scale": scale}
        for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_)):
            self.arrays[f"W{i}"] = np.asarray(w, dtype=np.float64)
            self.arrays[f"b{i}"] = np.asarray(b, dtype=np.float64)
        self.meta.update(n_layers=len(model.coefs_), n_train=int(y.size), n_pos=int(y.sum()),
                         n_features=int(X.shape[1]), n_iter=int(model.n_iter_))
        return self

    def _logits(self, h: np.ndarray) -> np.ndarray:
        """``meta['n_layers']`` affine layers ``W{i}``, ``b{i}`` with ReLU between them."""
        n_layers = int(self.meta.get("n_layers", 1))
        for i in range(n_layers):
            h = h @ self.arrays[f"W{i}"] + self.arrays[f"b{i}"]
            if i < n_layers - 1:
                h = np.maximum(h, 0.0)
        return h
