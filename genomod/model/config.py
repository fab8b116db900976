"""ModelConfig: one validated, JSON-serialisable dataclass describing a StripedHyena-2-style hybrid model.

Layer kinds (names from the field): ``SE`` (Hyena-SE, short explicit filter), ``MR`` (Hyena-MR, medium
explicit filter), ``LI`` (Hyena-LI, long implicit modal filter), ``MHA`` (rotary multi-head attention).
Evo 2 layouts are expressed exactly (translated from the published YAMLs by ``genomod.convert.evo2``);
genomod's own training choices are options, not forks. Presets are data (``genomod/data/presets``);
parameter counts come from the model itself (``genomod.model.count_parameters``, meta device).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genomod.data_paths import presets_dir
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

    def block_reach(self) -> list[int | None]:
        """Per layer, how many earlier positions an output position depends on (None: all of them).

        Hyena-SE/MR: the featurizer's short filter plus the explicit inner filter; Hyena-LI and attention see
        the whole sequence. Exact scoring uses it to recompute only what an SNV changes in the first layers.
        """
        short = self.short_filter_length - 1
        taps = {"SE": self.se_filter_length, "MR": self.mr_filter_length}
        return [short + taps[k] - 1 if k in taps else None for k in self.layer_types]

    def trailing_outputs(self, length: int) -> list[int]:
        """Per layer, how many of its last output positions a prefix of ``length`` tokens needs to give its
        state and the next token's logits (``HybridModel.prefill``): the head reads the last position, a layer
        of finite reach r reads the last n + r inputs for n outputs and its state, the others all."""
        need, n = [0] * self.num_layers, 1
        for i in reversed(range(self.num_layers)):
            need[i] = n
            reach = self.block_reach()[i]
            n = length if reach is None else min(length, n + reach)
        return need

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

    # ---- presets ----------------------------------------------------------------------------------
    @classmethod
    def preset(cls, preset_name: str, /, **overrides: Any) -> ModelConfig:
        """A named preset (see ``PRESETS``), optionally with field overrides (``name`` included).

        Presets are JSON files in ``genomod/data/presets``: genomod's own, and the published Evo 2 shapes
        (``evo2-*``, written from the shipped Evo 2 YAMLs by ``genomod.convert.evo2.write_presets``).
        """
        name = preset_name
        if name not in PRESETS:
            import difflib

            close = difflib.get_close_matches(name, PRESETS, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown model preset {name!r}{hint} (known: {', '.join(PRESETS)})")
        # expanded first, so that overrides (layer_types too) apply on top
        data = cls.from_json(presets_dir() / PRESETS[name]).to_dict()
        return cls.from_dict({**data, **overrides}, source=f"preset {name}")


def _preset_index() -> dict[str, str]:
    """Preset name -> its JSON file name in ``genomod/data/presets``."""
    return {p.stem: p.name for p in sorted(presets_dir().glob("*.json"))}


PRESETS: dict[str, str] = _preset_index()
