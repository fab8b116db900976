"""Supervised heads on variant embeddings: feature building, a numpy-only predictor, pickle-free save/load.

A fitted head is a set of named float64 arrays (scaler mean/scale, weights) plus JSON metadata. Prediction
is one NumPy function of those arrays, used both right after fitting and after :func:`load_head`, so a
saved head reproduces its probabilities exactly. Files: ``<dir>/head.safetensors`` (arrays) and
``<dir>/head.json`` (kind, feature spec, layer, training metadata). No pickle is ever read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from genomod.errors import ConfigError, InputError, ModelError
from genomod.utils import atomic_path, write_json

FORMAT_VERSION = 1
PARTS = ("ref", "alt", "diff")
HEAD_KINDS: dict[str, type[Head]] = {}  # kind name -> class, filled by @register_head (genomod.heads imports all)


@dataclass(frozen=True)
class FeatureSpec:
    """Which embedding parts are concatenated ('ref', 'alt', 'diff' = alt - ref) and whether a score is appended."""

    parts: tuple[str, ...] = ("ref", "alt", "diff")
    zero_shot: bool = False

    def __post_init__(self) -> None:
        bad = [p for p in self.parts if p not in PARTS]
        if bad or not self.parts:
            raise ConfigError(f"feature parts must be a non-empty subset of {PARTS}, got {self.parts}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"parts": list(self.parts), "zero_shot": self.zero_shot}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(d.get("parts", PARTS)), bool(d.get("zero_shot", False)))


def build_features(emb: Mapping[str, np.ndarray], spec: FeatureSpec = FeatureSpec(), layer: str | None = None,
                   zero_shot: np.ndarray | None = None) -> np.ndarray:
    """Feature matrix from ``emb`` (keys 'ref'/'alt' or 'ref/<layer>'/'alt/<layer>'), as float64.

    ``zero_shot`` (one oriented score per row, higher = damaging) is appended as the last column when
    ``spec.zero_shot`` is true. Rows with NaN embeddings stay NaN (callers exclude them).
    """
    keys = ("ref", "alt") if layer is None else (f"ref/{layer}", f"alt/{layer}")
    for k in keys:
        if k not in emb:
            raise InputError(f"embeddings lack key {k!r} (have {', '.join(sorted(map(str, emb)))})")
    ref = np.asarray(emb[keys[0]], dtype=np.float64)
    alt = np.asarray(emb[keys[1]], dtype=np.float64)
    if ref.shape != alt.shape or ref.ndim != 2:
        raise InputError(f"ref {ref.shape} and alt {alt.shape} embeddings must be equal 2-D shapes")
    blocks = {"ref": ref, "alt": alt, "diff": alt - ref}
    cols = [blocks[p] for p in spec.parts]
    if spec.zero_shot:
        if zero_shot is None:
            raise ConfigError("feature spec asks for a zero-shot score column but none was given")
        z = np.asarray(zero_shot, dtype=np.float64).reshape(-1, 1)
        if z.shape[0] != ref.shape[0]:
            raise InputError(f"zero-shot scores ({z.shape[0]}) and embeddings ({ref.shape[0]}) differ in length")
        cols.append(z)
    return np.concatenate(cols, axis=1)


def standardize_params(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and scale (population std; 1.0 where the column is constant), as StandardScaler."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[~(scale > 0)] = 1.0
    return mean, scale


@dataclass
class Head:
    """Base class: a fitted binary classifier stored as named float64 arrays plus JSON metadata."""

    feature_spec: FeatureSpec = field(default_factory=FeatureSpec)
    layer: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = "base"

    def fit(self, X: np.ndarray, y: np.ndarray) -> Head:  # pragma: no cover - abstract
        """Fit on features X (n, d) and binary labels y (n,)."""
        raise NotImplementedError

    def _check_fit_input(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).ravel()
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise InputError(f"features {X.shape} and labels {y.shape} do not match")
        if not np.isfinite(X).all() or not np.isfinite(y).all():
            raise InputError("features/labels contain NaN; drop unscored or unlabelled rows first")
        if set(np.unique(y)) != {0.0, 1.0}:
            raise InputError("a head needs binary labels with both classes (0 and 1)")
        return X, y

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of the positive class for each row of X, shape (n,)."""
        if not self.arrays:
            raise ModelError(f"{self.kind} head is not fitted")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.arrays["mean"].shape[0]:
            raise InputError(f"features have shape {X.shape}, head expects (n, {self.arrays['mean'].shape[0]})")
        return expit(self._logits((X - self.arrays["mean"]) / self.arrays["scale"])[:, 0])

    def _logits(self, h: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Logits (n, 1) from standardized features (n, d): each kind's own layout of its arrays."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """Metadata written to head.json."""
        return {
            "format": "genomod-head", "format_version": FORMAT_VERSION, "kind": self.kind, "layer": self.layer,
            "feature_spec": self.feature_spec.to_dict(), "params": self.params, "meta": self.meta,
            "arrays": {k: list(v.shape) for k, v in self.arrays.items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``head.safetensors`` + ``head.json`` into folder ``path`` (created); returns the folder."""
        from safetensors.numpy import save_file

        if not self.arrays:
            raise ModelError(f"{self.kind} head is not fitted; nothing to save")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "head.safetensors") as tmp:
            save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in self.arrays.items()}, str(tmp),
                      metadata={"format": "genomod-head", "kind": self.kind})
        write_json(out / "head.json", self.to_json(), default=_json_default)
        return out


def register_head(cls: type[Head]) -> type[Head]:
    """Class decorator: make a head kind known to :func:`new_head` and :func:`load_head` by its ``kind``."""
    HEAD_KINDS[cls.kind] = cls
    return cls


def _head_class(kind: Any) -> type[Head] | None:
    return HEAD_KINDS.get(kind) if isinstance(kind, str) else None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_head(path: str | os.PathLike) -> Head:
    """Load a head saved by :meth:`Head.save` (folder or its head.json); never unpickles anything."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    p = Path(path)
    folder = p.parent if p.is_file() else p
    meta_path, weights_path = folder / "head.json", folder / "head.safetensors"
    if not meta_path.is_file() or not weights_path.is_file():
        raise InputError(f"{folder}: not a saved head (needs head.json and head.safetensors)")
    try:
        info = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{meta_path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
    if info.get("format") != "genomod-head":
        raise ModelError(f"{meta_path}: not a genomod head file")
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(f"{meta_path}: head format {info['format_version']} is newer than this genomod")
    kind = info.get("kind")
    cls = _head_class(kind)
    if cls is None:
        raise ModelError(f"{meta_path}: unknown head kind {kind!r}")
    try:
        arrays = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{weights_path}: cannot read weights ({exc})") from None
    expected = info.get("arrays", {})
    for name, shape in expected.items():
        if name not in arrays or list(arrays[name].shape) != list(shape):
            raise ModelError(f"{weights_path}: array {name!r} missing or of the wrong shape")
    head = cls(feature_spec=FeatureSpec.from_dict(info.get("feature_spec", {})), layer=info.get("layer"),
                         params=dict(info.get("params", {})))
    head.arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    head.meta = dict(info.get("meta", {}))
    return head


def new_head(kind: str, **kwargs: Any) -> Head:
    """Construct an unfitted head by kind name (see ``HEAD_KINDS``: 'logistic', 'mlp')."""
    cls = _head_class(kind)
    if cls is None:
        raise ConfigError(f"unknown head kind {kind!r}; use {' or '.join(sorted(HEAD_KINDS))}")
    return cls(**kwargs)


__all__ = ["HEAD_KINDS", "FeatureSpec", "Head", "build_features", "load_head", "new_head", "register_head",
           "standardize_params"]
