"""ModelConfig: one validated, JSON-serialisable dataclass describing a StripedHyena-2-style hybrid model.

Layer kinds (names from the field): ``SE`` (Hyena-SE, short explicit filter), ``MR`` (Hyena-MR, medium
explicit filter), ``LI`` (Hyena-LI, long implicit modal filter), ``MHA`` (rotary multi-head attention).
Evo 2 layouts are expressed exactly (``from_evo2``); genomod's own training choices are options, not forks.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genomod.errors import ConfigError

LAYER_KINDS = ("SE", "MR", "LI", "MHA")
CONFIG_VERSION = 1
EVO2_PERIOD = "SE MR LI MHA SE MR LI"


def expand_pattern(pattern: str | list[str], num_layers: int) -> list[str]:
    """Tile a block pattern such as ``"SE MR LI MHA"`` to ``num_layers`` layer kinds."""
    kinds = pattern.replace(",", " ").split() if isinstance(pattern, str) else list(pattern)
    kinds = [k.upper() for k in kinds]
    bad = [k for k in kinds if k not in LAYER_KINDS]
    if bad or not kinds:
        raise ConfigError(f"pattern: unknown layer kind(s) {bad or pattern!r}; use {', '.join(LAYER_KINDS)}")
    return [kinds[i % len(kinds)] for i in range(num_layers)]


@dataclass
class ModelConfig:
    """Shape and options of a HybridModel. ``layer_types`` is the source of truth for the stack."""

    name: str = "custom"
    vocab_size: int = 512
    hidden_size: int = 256
    layer_types: list[str] = field(default_factory=lambda: expand_pattern(EVO2_PERIOD, 8))
    num_attention_heads: int = 4
    inner_mlp_size: int = 688
    mlp_activation: str = "gelu"
    evo2_style_activations: bool = False  # True: activation on layer 0 only, identity after (Evo 2)
    short_filter_length: int = 3  # featurizer depthwise conv on the q/k/v projections
    short_filter_bias: bool = False
    se_filter_length: int = 7
    se_filter_groups: int = 16
    mr_filter_length: int = 128
    mr_filter_groups: int = 16
    mr_filter_decay: float = 0.0  # genomod option: h * exp(-decay * t / length) regulariser; 0 = Evo 2
    li_state_size: int = 16
    li_filter_groups: int = 256
    interleave: bool = True  # Evo 2 featurizer output channel interleave
    column_split_hyena: bool = False
    qkv_proj_bias: bool = False
    hyena_out_proj_bias: bool = True
    mha_out_proj_bias: bool = True
    rotary_base: float = 10000.0
    rotary_scaling_factor: float = 1.0  # linear position interpolation (Evo 2 context extension: 128)
    norm_eps: float = 1e-6
    final_norm: bool = True
    tie_embeddings: bool = True
    max_seqlen: int = 8192
    dtype: str = "float32"
    init: str = "genomod"  # "genomod" (trainable defaults) or "vortex" (Evo 2 reference random init)
    kernels: str = "auto"  # Hyena ops: reference | fused | auto (fused on CUDA); GENOMOD_KERNELS overrides
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        self.layer_types = [str(k).upper() for k in self.layer_types]
        self.validate()

    # ---- derived -------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layer_types)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def layer_indices(self, kind: str) -> list[int]:
        """Indices of the layers of one kind (as Evo 2's ``hcs/hcm/hcl/attn_layer_idxs``)."""
        return [i for i, k in enumerate(self.layer_types) if k == kind]

    # ---- validation ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""

        def need(cond: bool, key: str, msg: str) -> None:
            if not cond:
                raise ConfigError(f"model config: {key}: {msg}")

        need(self.version <= CONFIG_VERSION, "version",
             f"config version {self.version} is newer than this genomod supports ({CONFIG_VERSION}); upgrade genomod")
        need(self.vocab_size >= 256, "vocab_size", f"must be >= 256 (byte tokens), got {self.vocab_size}")
        need(self.hidden_size > 0, "hidden_size", f"must be positive, got {self.hidden_size}")
        need(len(self.layer_types) > 0, "layer_types", "empty")
        bad = [k for k in self.layer_types if k not in LAYER_KINDS]
        need(not bad, "layer_types", f"unknown kind(s) {bad}; use {LAYER_KINDS}")
        need(self.num_attention_heads > 0 and self.hidden_size % self.num_attention_heads == 0,
             "num_attention_heads", f"{self.num_attention_heads} must divide hidden_size {self.hidden_size}")
        for key in ("se_filter_groups", "mr_filter_groups", "li_filter_groups"):
            g = getattr(self, key)
            need(g > 0 and self.hidden_size % g == 0, key, f"{g} must divide hidden_size {self.hidden_size}")
        for key in ("short_filter_length", "se_filter_length", "mr_filter_length", "li_state_size",
                    "inner_mlp_size", "max_seqlen"):
            need(getattr(self, key) > 0, key, f"must be positive, got {getattr(self, key)}")
        need(self.mlp_activation in ("gelu", "silu"), "mlp_activation", f"gelu or silu, got {self.mlp_activation!r}")
        need(self.dtype in ("float32", "bfloat16", "float16"), "dtype", f"float32/bfloat16/float16, got {self.dtype!r}")
        need(self.init in ("genomod", "vortex"), "init", f"genomod or vortex, got {self.init!r}")
        need(self.kernels in ("reference", "fused", "auto"), "kernels",
             f"reference, fused or auto, got {self.kernels!r}")
        need(self.rotary_scaling_factor > 0, "rotary_scaling_factor", "must be positive")
        need(self.mr_filter_decay >= 0, "mr_filter_decay", "must be >= 0")

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model config") -> ModelConfig:
        """Build from a dict; unknown keys are an error naming them; ``pattern`` + ``num_layers`` allowed."""
        data = dict(data)
        bad_keys = [k for k in data if not isinstance(k, str)]
        if bad_keys:
            raise ConfigError(f"{source}: keys must be strings, got {bad_keys[0]!r}")
        if "pattern" in data:
            pattern = data.pop("pattern")
            n = data.pop("num_layers", None)
            if n is None:
                raise ConfigError(f"{source}: 'pattern' needs 'num_layers'")
            data["layer_types"] = expand_pattern(pattern, int(n))
        else:
            n = data.pop("num_layers", None)
            if n is not None and "layer_types" in data and int(n) != len(data["layer_types"]):
                raise ConfigError(f"{source}: num_layers={n} disagrees with {len(data['layer_types'])} layer_types")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}")
        version = data.get("version", CONFIG_VERSION)
        if isinstance(version, int) and version > CONFIG_VERSION:
            raise ConfigError(f"{source}: config version {version} is newer than this genomod ({CONFIG_VERSION})")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return cls.from_dict(data, source=str(path))

    def replace(self, **changes: Any) -> ModelConfig:
        return ModelConfig.from_dict({**self.to_dict(), **changes})

    # ---- presets -------------------------------------------------------------------------------
    @classmethod
    def preset(cls, preset_name: str, /, **overrides: Any) -> ModelConfig:
        """A named preset (see ``PRESETS``), optionally with field overrides (``name`` included)."""
        name = preset_name
        if name not in PRESETS:
            import difflib

            close = difflib.get_close_matches(name, PRESETS, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown model preset {name!r}{hint} (known: {', '.join(PRESETS)})")
        return cls.from_dict({**PRESETS[name](), **overrides}, source=f"preset {name}")

    @classmethod
    def from_evo2(cls, cfg: dict[str, Any], name: str | None = None) -> ModelConfig:
        """Translate a published Evo 2 / vortex YAML config (as a dict) into an exact genomod config."""
        required = ["hidden_size", "num_layers", "num_attention_heads", "attn_layer_idxs", "hcl_layer_idxs",
                    "hcm_layer_idxs", "hcs_layer_idxs", "hcm_filter_length", "hcs_filter_length",
                    "hcm_filter_groups", "hcs_filter_groups", "short_filter_length", "state_size", "inner_mlp_size"]
        missing = [k for k in required if k not in cfg]
        if missing:
            raise ConfigError(f"Evo 2 config: missing key(s) {', '.join(missing)}")
        n = int(cfg["num_layers"])
        kinds: list[str | None] = [None] * n
        for key, kind in (("hcs_layer_idxs", "SE"), ("hcm_layer_idxs", "MR"), ("hcl_layer_idxs", "LI"),
                          ("attn_layer_idxs", "MHA")):
            for i in cfg[key]:
                if not 0 <= i < n or kinds[i] is not None:
                    raise ConfigError(f"Evo 2 config: {key} has bad or duplicate layer index {i}")
                kinds[i] = kind
        if any(k is None for k in kinds):
            raise ConfigError(f"Evo 2 config: layers {[i for i, k in enumerate(kinds) if k is None]} have no kind")
        if cfg.get("proj_groups", 1) != 1:
            raise ConfigError("Evo 2 config: proj_groups != 1 (grouped-query attention) is not supported")
        if cfg.get("hyena_flip_x1x2", False):
            raise ConfigError("Evo 2 config: hyena_flip_x1x2=True is not supported")
        return cls(
            name=name or str(cfg.get("model_name", "evo2")),
            vocab_size=int(cfg.get("vocab_size", 512)),
            hidden_size=int(cfg["hidden_size"]),
            layer_types=[str(k) for k in kinds],
            num_attention_heads=int(cfg["num_attention_heads"]),
            inner_mlp_size=int(cfg["inner_mlp_size"]),
            mlp_activation=str(cfg.get("mlp_activation", "gelu")),
            evo2_style_activations=bool(cfg.get("evo2_style_activations", False)),
            short_filter_length=int(cfg["short_filter_length"]),
            short_filter_bias=bool(cfg.get("short_filter_bias", False)),
            se_filter_length=int(cfg["hcs_filter_length"]),
            se_filter_groups=int(cfg["hcs_filter_groups"]),
            mr_filter_length=int(cfg["hcm_filter_length"]),
            mr_filter_groups=int(cfg["hcm_filter_groups"]),
            li_state_size=int(cfg["state_size"]),
            li_filter_groups=int(cfg.get("hcl_filter_groups", cfg["hidden_size"])),
            interleave=bool(cfg.get("interleave", True)),
            column_split_hyena=bool(cfg.get("column_split_hyena", True)),
            qkv_proj_bias=bool(cfg.get("qkv_proj_bias", True)),
            hyena_out_proj_bias=bool(cfg.get("hyena_out_proj_bias", True)),
            mha_out_proj_bias=bool(cfg.get("mha_out_proj_bias", True)),
            rotary_base=float(cfg.get("rotary_emb_base", 1000000)),
            rotary_scaling_factor=float(cfg.get("rotary_emb_scaling_factor", 1.0))
            if cfg.get("use_interpolated_rotary_pos_emb", False) else 1.0,
            norm_eps=float(cfg.get("eps", 1e-5)),
            final_norm=bool(cfg.get("final_norm", True)),
            tie_embeddings=bool(cfg.get("tie_embeddings", True)),
            max_seqlen=int(cfg.get("max_seqlen", 8192)),
            dtype="bfloat16",
            init="vortex",
        )


def _evo2(hidden: int, heads: int, mlp: int, attn: list[int], n: int, groups: int, base: float,
          scale: float = 1.0, max_seqlen: int = 8192) -> dict[str, Any]:
    """Published Evo 2 shape (ArcInstitute/evo2 configs): SE/MR/LI fill the non-attention layers in order."""
    kinds, cycle = [], ["SE", "MR", "LI"]
    j = 0
    for i in range(n):
        if i in attn:
            kinds.append("MHA")
        else:
            kinds.append(cycle[j % 3])
            j += 1
    return dict(
        vocab_size=512, hidden_size=hidden, layer_types=kinds, num_attention_heads=heads, inner_mlp_size=mlp,
        evo2_style_activations=True, se_filter_groups=groups, mr_filter_groups=groups, li_filter_groups=hidden,
        interleave=True, column_split_hyena=False, qkv_proj_bias=False, rotary_base=base,
        rotary_scaling_factor=scale, max_seqlen=max_seqlen, dtype="bfloat16", init="vortex",
    )


PRESETS: dict[str, Any] = {
    # genomod's own small models (gelu MLPs everywhere, decaying MR filters, trainable init)
    "tiny": lambda: dict(name="tiny", hidden_size=256, layer_types=expand_pattern(EVO2_PERIOD, 8),
                         num_attention_heads=4, inner_mlp_size=688, se_filter_groups=16, mr_filter_groups=16,
                         li_filter_groups=256, mr_filter_decay=4.0, max_seqlen=1024),
    "small": lambda: dict(name="small", hidden_size=512, layer_types=expand_pattern(EVO2_PERIOD, 16),
                          num_attention_heads=8, inner_mlp_size=1376, se_filter_groups=32, mr_filter_groups=32,
                          li_filter_groups=512, mr_filter_decay=4.0, max_seqlen=8192),
    # Evo 2 published shapes (../shared/evo2_configs, ArcInstitute/evo2 commit 53f1959)
    "evo2-1b": lambda: dict(name="evo2-1b", **_evo2(1920, 15, 5120, [3, 10, 17, 24], 25, 128, 10000.0)),
    "evo2-7b": lambda: dict(name="evo2-7b", **_evo2(4096, 32, 11008, [3, 10, 17, 24, 31], 32, 256, 10000.0,
                                                     max_seqlen=32768)),
    "evo2-7b-1m": lambda: dict(name="evo2-7b-1m", **_evo2(4096, 32, 11264, [3, 10, 17, 24, 31], 32, 256, 10000.0,
                                                           scale=128.0, max_seqlen=1048576)),
    "evo2-20b-1m": lambda: dict(name="evo2-20b-1m", **_evo2(8192, 64, 22528, [3, 10, 17], 24, 512, 1e6,
                                                             scale=128.0, max_seqlen=1048576)),
    "evo2-40b": lambda: dict(name="evo2-40b", **_evo2(8192, 64, 21888, [3, 10, 17, 24, 31, 35, 42, 49], 50, 512,
                                                       1e6)),
    "evo2-40b-1m": lambda: dict(name="evo2-40b-1m", **_evo2(8192, 64, 22528, [3, 10, 17, 24, 31, 35, 42, 49], 50,
                                                             512, 1e6, scale=128.0, max_seqlen=1048576)),
}


def count_parameters_analytic(cfg: ModelConfig) -> int:
    """Parameter count from the config alone (no tensors): embedding + blocks + final norm."""
    d, f = cfg.hidden_size, cfg.inner_mlp_size
    total = cfg.vocab_size * d * (1 if cfg.tie_embeddings else 2) + (d if cfg.final_norm else 0)
    mlp = 3 * d * f + 2 * d  # l1, l2, l3 + two norms
    for kind in cfg.layer_types:
        if kind == "MHA":
            total += 3 * d * d + (3 * d if cfg.qkv_proj_bias else 0) + d * d + (d if cfg.mha_out_proj_bias else 0)
        else:
            total += 3 * d * d + (3 * d if cfg.qkv_proj_bias else 0) + d * d + (d if cfg.hyena_out_proj_bias else 0)
            total += 3 * d * cfg.short_filter_length + (3 * d if cfg.short_filter_bias else 0)
            if kind == "SE":
                total += cfg.se_filter_groups * cfg.se_filter_length
            elif kind == "MR":
                total += cfg.mr_filter_groups * cfg.mr_filter_length + d
            else:
                total += 2 * cfg.li_filter_groups * cfg.li_state_size + d
        total += mlp
    return total


def flops_per_token(cfg: ModelConfig, seqlen: int) -> float:
    """Approximate training FLOPs per token (forward + backward = 3x forward) for MFU reporting."""
    d = cfg.hidden_size
    dense = 2 * (count_parameters_analytic(cfg) - cfg.vocab_size * d) + 2 * cfg.vocab_size * d
    extra = 0.0
    for kind in cfg.layer_types:
        if kind == "MHA":
            extra += 2 * 2 * seqlen * d  # QK^T and AV, causal average ~ L/2 each, times 2 flops
        elif kind == "SE":
            extra += 2 * d * (cfg.se_filter_length + 3 * cfg.short_filter_length)
        elif kind == "MR":
            extra += 2 * d * (cfg.mr_filter_length + 3 * cfg.short_filter_length)
        else:
            extra += d * (10 * math.log2(max(2 * seqlen, 2)) + 6 * cfg.short_filter_length)
    return 3.0 * (dense + extra)
