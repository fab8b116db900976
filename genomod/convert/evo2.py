"""Convert Evo 2 checkpoints (vortex / StripedHyena 2 ``.pt`` state dicts) into genomod checkpoints.

genomod's modules carry vortex's parameter names, so conversion is a checked renaming-free copy:

- the checkpoint is read with ``torch.load(weights_only=True)`` only (``io.BytesIO`` is the one extra type
  allowed, because Transformer Engine stores its FP8 metadata as BytesIO; those entries are dropped unread);
- split downloads ``NAME.pt.part0 .. partN`` are byte pieces of one file (Evo 2 concatenates them): they
  are merged into a temporary file beside the output, hashed, memory-mapped and deleted afterwards;
- Transformer Engine ``*._extra_state`` and rotary ``*.inv_freq`` entries are dropped;
- attention ``Wqkv`` rows are permuted from the training layout (per head ``[q k v]``) to ``[Q K V]`` when the
  config says ``column_split`` (default True), exactly as vortex's ``custom_load_state_dict`` does;
- every remaining key and shape is checked against the genomod model built from the Evo 2 YAML config.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from genomod.data_paths import evo2_configs_dir
from genomod.errors import ConfigError, InputError, ModelError
from genomod.model import HybridModel, ModelConfig
from genomod.utils import file_digest

# genomod name -> published YAML (genomod/data/evo2_configs, ArcInstitute/evo2 commit 53f1959)
EVO2_CONFIGS: dict[str, str] = {
    "1b": "evo2-1b-8k.yml",
    "7b": "evo2-7b-8k.yml",
    "7b-262k": "evo2-7b-262k.yml",
    "7b-1m": "evo2-7b-1m.yml",
    "20b": "evo2-20b-1m.yml",
    "40b": "evo2-40b-8k.yml",
    "40b-1m": "evo2-40b-1m.yml",
}
# genomod preset name -> Evo 2 config name: ``write_presets`` translates these into genomod/data/presets/*.json
EVO2_PRESETS: dict[str, str] = {"evo2-1b": "1b", "evo2-7b": "7b", "evo2-7b-1m": "7b-1m", "evo2-20b-1m": "20b",
                                "evo2-40b": "40b", "evo2-40b-1m": "40b-1m"}
# Evo 2's own checkpoint names (evo2/utils.py CONFIG_MAP) -> genomod config name
EVO2_CHECKPOINT_NAMES: dict[str, str] = {
    "evo2_1b_base": "1b",
    "evo2_7b_base": "7b",
    "evo2_7b": "7b-1m",
    "evo2_40b_base": "40b",
    "evo2_40b": "40b-1m",
}
DROPPED_SUFFIXES = ("._extra_state", "rotary_emb.inv_freq")
_PART = re.compile(r"^(?P<base>.+)\.part(?P<idx>\d+)$")


# ---- configs --------------------------------------------------------------------------------------
def evo2_config_dir() -> Path:
    """Folder of the Evo 2 YAML configs shipped inside the package."""
    return evo2_configs_dir()


def read_evo2_yaml(name_or_path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """Load an Evo 2 YAML config by genomod name (``7b``, ``40b-1m``, ...) or path; returns (dict, name)."""
    key = str(name_or_path)
    if key in EVO2_CHECKPOINT_NAMES:
        key = EVO2_CHECKPOINT_NAMES[key]
    if key in EVO2_CONFIGS:
        path, name = evo2_config_dir() / EVO2_CONFIGS[key], key
    else:
        path = Path(key)
        if not path.is_file():
            raise ConfigError(f"Evo 2 config {key!r}: not a known name ({', '.join(EVO2_CONFIGS)}) "
                              f"and not a YAML file")
        name = path.name
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping")
    return data, name


def translate_evo2_config(cfg: dict[str, Any], name: str | None = None) -> ModelConfig:
    """Translate a published Evo 2 / vortex YAML config (as a dict) into an exact genomod config (the one
    Evo 2 translator: presets, conversion and parity tests all come through here)."""
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
    return ModelConfig(
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


def evo2_model_config(name_or_path: str | os.PathLike | dict[str, Any], dtype: str = "bfloat16") -> ModelConfig:
    """The exact genomod ``ModelConfig`` of a named/pathed Evo 2 YAML config (or an already-loaded dict)."""
    if isinstance(name_or_path, dict):
        data, name = name_or_path, str(name_or_path.get("model_name", "evo2"))
    else:
        data, name = read_evo2_yaml(name_or_path)
    hidden = int(data["hidden_size"]) if "hidden_size" in data else None
    # vortex builds every Hyena-LI block with hidden_size filter groups whatever hcl_filter_groups says
    if hidden is not None and int(data.get("hcl_filter_groups", hidden)) != hidden:
        raise ConfigError(f"Evo 2 config {name}: hcl_filter_groups={data['hcl_filter_groups']} != hidden_size; "
                          "vortex ignores this key and uses hidden_size")
    # vortex gives an inner FIR filter a skip term D exactly when its length is >= 128; genomod by kind (MR only)
    if int(data.get("hcs_filter_length", 7)) >= 128 or int(data.get("hcm_filter_length", 128)) < 128:
        raise ConfigError(f"Evo 2 config {name}: needs hcs_filter_length < 128 <= hcm_filter_length "
                          "(vortex decides the D skip term by filter length)")
    cfg = translate_evo2_config(data, name=f"evo2-{name}" if name in EVO2_CONFIGS else name)
    return cfg.replace(dtype=dtype)


def write_presets(folder: str | os.PathLike | None = None) -> list[Path]:
    """Write the ``EVO2_PRESETS`` translations as genomod preset JSON files (configs are data: ``ModelConfig.preset``
    reads them without importing this module; tests/test_evo2_convert.py checks that they match the YAMLs)."""
    from genomod.data_paths import presets_dir

    out = Path(folder) if folder is not None else presets_dir()
    written = []
    for preset, name in EVO2_PRESETS.items():
        path = out / f"{preset}.json"
        evo2_model_config(name).replace(name=preset).to_json(path)
        written.append(path)
    return written


def guess_config_name(checkpoint: str | os.PathLike) -> str | None:
    """Config name from an Evo 2 checkpoint file name (``evo2_7b.pt`` -> ``7b-1m``), else None."""
    stem = Path(str(checkpoint)).name
    stem = _PART.sub(r"\g<base>", stem)
    stem = stem[:-3] if stem.endswith(".pt") else stem
    return EVO2_CHECKPOINT_NAMES.get(stem)


# ---- reading ------------------------------------------------------------------------------------------
def checkpoint_parts(path: str | os.PathLike) -> list[Path]:
    """The files of a checkpoint: ``[x.pt]``, or ``x.pt.part0 .. partN`` (given ``x.pt`` or any part)."""
    p = Path(path)
    m = _PART.match(p.name)
    base = p.with_name(m.group("base")) if m else p
    if p.is_file() and not m:
        return [p]
    parts, i = [], 0
    while base.with_name(f"{base.name}.part{i}").is_file():
        parts.append(base.with_name(f"{base.name}.part{i}"))
        i += 1
    if not parts:
        raise InputError(f"{p}: checkpoint not found (neither the file nor {base.name}.part0 ... exists)")
    stray = sorted(q.name for q in base.parent.glob(f"{base.name}.part*")
                   if _PART.match(q.name) and int(_PART.match(q.name).group("idx")) >= i)
    if stray:
        raise InputError(f"{base}: parts {', '.join(stray)} exist but {base.name}.part{i} is missing")
    return parts


@contextlib.contextmanager
def _merged(parts: list[Path], tmp_dir: Path) -> Iterator[tuple[Path, str]]:
    """Yield (single file, sha256): the file itself, or the parts concatenated into a temporary file."""
    if len(parts) == 1:
        yield parts[0], file_digest(parts[0])
        return
    tmp_dir.mkdir(parents=True, exist_ok=True)
    merged = tmp_dir / f".{parts[0].name}.merged.tmp"
    h = hashlib.sha256()
    try:
        with open(merged, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 24), b""):
                        h.update(chunk)
                        out.write(chunk)
        yield merged, h.hexdigest()
    finally:
        merged.unlink(missing_ok=True)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load`` a single ``.pt`` state dict safely (weights only, BytesIO allowed, memory-mapped)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals([io.BytesIO]):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                state = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        raise ModelError(f"{path}: refused to load: the file holds objects other than tensors, which genomod "
                         f"never unpickles ({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict) and not any(
            isinstance(v, torch.Tensor) for v in state.values()):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state dict (mapping of names to tensors), got {type(state).__name__}")
    return state


# ---- transforming -------------------------------------------------------------------------------------
def unsplit_wqkv(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """vortex's ``column_split`` fix: rows (heads, 3, head_dim) -> (3, heads, head_dim); works for a bias too."""
    rows = weight.shape[0]
    hd = rows // (3 * num_heads)
    if rows != 3 * num_heads * hd:
        raise ModelError(f"Wqkv has {rows} rows, not 3 * {num_heads} heads * head_dim")
    idx = torch.arange(rows).reshape(num_heads, 3, hd).transpose(0, 1).reshape(-1)
    return weight[idx]


def split_wqkv(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Inverse of ``unsplit_wqkv`` (genomod/vortex in-memory layout -> Evo 2 checkpoint layout)."""
    rows = weight.shape[0]
    hd = rows // (3 * num_heads)
    idx = torch.arange(rows).reshape(3, num_heads, hd).transpose(0, 1).reshape(-1)
    return weight[idx]


def convert_state_dict(state: dict[str, Any], cfg: ModelConfig, column_split: bool = True
                       ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a vortex state dict onto genomod's (checked); returns (tensors, dropped key names)."""
    dropped = sorted(k for k in state if k.endswith(DROPPED_SUFFIXES))
    tensors = {k: v for k, v in state.items() if not k.endswith(DROPPED_SUFFIXES)}
    bad = sorted(k for k, v in tensors.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise ModelError(f"checkpoint entries that are not tensors: {', '.join(bad[:10])}")
    with torch.device("meta"):
        expected = HybridModel(cfg).state_dict()
    missing = sorted(set(expected) - set(tensors))
    unknown = sorted(set(tensors) - set(expected))
    if missing or unknown:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:20]) + (f" ... ({len(keys)} in all)" if len(keys) > 20 else "") or "none"

        raise ModelError(f"checkpoint does not match config {cfg.name} ({cfg.num_layers} layers "
                         f"{' '.join(cfg.layer_types)}): missing keys: {show(missing)}; unknown keys: {show(unknown)}")
    wrong = [f"{k} {tuple(tensors[k].shape)} (config expects {tuple(v.shape)})"
             for k, v in expected.items() if tuple(tensors[k].shape) != tuple(v.shape)]
    if wrong:
        raise ModelError(f"checkpoint shapes do not match config {cfg.name}: " + "; ".join(wrong[:10])
                         + (f" ... ({len(wrong)} in all)" if len(wrong) > 10 else ""))
    if column_split:
        for i in cfg.layer_indices("MHA"):
            for suffix in ("weight", "bias"):
                key = f"blocks.{i}.inner_mha_cls.Wqkv.{suffix}"
                if key in tensors:
                    tensors[key] = unsplit_wqkv(tensors[key], cfg.num_attention_heads)
    return {k: tensors[k] for k in expected}, dropped


def _to_model(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> HybridModel:
    with torch.device("meta"):
        model = HybridModel(cfg)
    model.load_state_dict(tensors, assign=True, strict=True)
    return model


def convert_evo2(checkpoint: str | os.PathLike, out_dir: str | os.PathLike,
                 config: str | os.PathLike | None = None, dtype: str | None = None) -> Path:
    """Convert an Evo 2 ``.pt`` (or its ``.partN`` pieces) into a genomod checkpoint folder ``out_dir``.

    ``config``: genomod name (see ``EVO2_CONFIGS``) or a YAML path; guessed from Evo 2's file names when
    omitted. ``dtype``: store weights as ``float32``/``bfloat16``/``float16`` (default: as in the file;
    the model then runs in bfloat16). LI poles and residues always stay float32.
    """
    from genomod.checkpoint import save_model

    parts = checkpoint_parts(checkpoint)
    if config is None:
        config = guess_config_name(parts[0])
        if config is None:
            raise ConfigError(f"{parts[0].name}: cannot tell which Evo 2 model this is; pass --config "
                              f"({', '.join(EVO2_CONFIGS)} or a YAML file)")
    if dtype is not None and dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    data, config_name = read_evo2_yaml(config)
    cfg = evo2_model_config(data, dtype=dtype or "bfloat16")
    cfg = cfg.replace(name=f"evo2-{config_name}" if config_name in EVO2_CONFIGS else cfg.name)
    column_split = bool(data.get("column_split", True))
    out = Path(out_dir)
    with _merged(parts, out) as (single, sha):
        state = load_state_dict_file(single)
        tensors, dropped = convert_state_dict(state, cfg, column_split=column_split)
        model = _to_model(tensors, cfg)
        source = {
            "format": "evo2-vortex",
            "file": parts[0].name if len(parts) == 1 else f"{parts[0].name[:-1]}0..{len(parts) - 1}",
            "parts": len(parts),
            "sha256": sha,
            "config": config_name,
            "column_split": column_split,
            "dropped_keys": len(dropped),
            "checkpoint_dtypes": sorted({str(t.dtype).replace("torch.", "") for t in tensors.values()}),
        }
        save_model(model, out, training={"source": source}, dtype=dtype)
        del model, tensors, state
    return out


def copy_evo2_configs(dest: str | os.PathLike) -> list[Path]:
    """Copy the shipped Evo 2 YAMLs into ``dest`` (for users who want to edit one); returns the paths."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(evo2_config_dir() / f, dest / f)) for f in EVO2_CONFIGS.values()]


# ---- Evo 2 scoring convention ----------------------------------------------------------------------------
@torch.no_grad()
def evo2_sequence_scores(model: HybridModel, seqs: list[str], prepend_bos: bool = False,
                         reduce_method: str = "mean", average_reverse_complement: bool = False) -> list[float]:
    """Per-sequence scores with Evo 2's ``score_sequences`` convention (each sequence on its own).

    Evo 2 (evo2/scoring.py) scores log p(x_t | x_<t) for t = 1 .. L-1: the first token is never scored
    (unless ``prepend_bos`` puts EOD=0 in front, then all L are), reduced by mean or sum; with
    ``average_reverse_complement`` the forward and reverse-complement scores are averaged.
    Tokens are genomod's (uppercase; IUPAC -> N), identical to Evo 2's bytes for ACGTN sequences.
    """
    from genomod.tokenizer import EOD_ID, encode, reverse_complement

    if reduce_method not in ("mean", "sum"):
        raise ConfigError(f"reduce_method must be mean or sum, got {reduce_method!r}")
    dev = model.device
    scores = []
    for seq in seqs:
        toks = torch.as_tensor(encode(seq), dtype=torch.long)[None]
        variants = [toks, reverse_complement(toks)] if average_reverse_complement else [toks]
        vals = []
        for t in variants:
            if prepend_bos:
                t = torch.cat([torch.full_like(t[:, :1], EOD_ID), t], dim=1)
            ll = model.log_likelihoods(t.to(dev))[0, 1:].double()
            vals.append(float(ll.mean() if reduce_method == "mean" else ll.sum()))
        scores.append(sum(vals) / len(vals))
    return scores

