"""Byte-level nucleotide tokens, compatible with Evo 2 / vortex ``CharLevelTokenizer``.

Policy (documented in docs/tokenizer.md):
- token id = ASCII byte of the *uppercase* base; vocabulary padded to 512; EOD = 0, PAD = 1.
- soft-masked (lowercase) bases get the uppercase token; the mask is returned as a separate boolean
  track on request (soft-masking is information, not a different token).
- IUPAC ambiguity codes (R Y S W K M B D H V) and any other byte that is not A/C/G/T/N become N.
- reverse complement works on token arrays directly (A<->T, C<->G, N->N), no Python loop over bases.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from genomod.errors import InputError

TOKENIZER_VERSION = "genomod-char-1"
VOCAB_SIZE = 512
EOD_ID = 0
PAD_ID = 1
BASES = "ACGT"
BASE_IDS = np.frombuffer(b"ACGT", dtype=np.uint8).astype(np.int64)  # A=65 C=67 G=71 T=84
N_ID = ord("N")
#: values of the per-base track beside the tokens (``encode(..., return_mask=True)`` gives 0/1; a pretraining
#: mixture may add 2, see data_prep.make_mixture ``junction_flank`` and genomod.train.data.loss_weights)
TRACK_PLAIN, TRACK_SOFTMASKED, TRACK_JUNCTION = 0, 1, 2

# byte -> token lookup: uppercase ACGTN map to themselves, lowercase to uppercase, everything else N.
_ENCODE = np.full(256, N_ID, dtype=np.uint8)
for _b in b"ACGTN":
    _ENCODE[_b] = _b
    _ENCODE[ord(chr(_b).lower())] = _b
# token -> complement token (only meaningful for 0..255; specials map to themselves)
_COMPLEMENT = np.arange(VOCAB_SIZE, dtype=np.int64)
for _a, _b in zip(b"ACGTN", b"TGCAN"):
    _COMPLEMENT[_a] = _b
_IS_LOWER = np.zeros(256, dtype=bool)
_IS_LOWER[np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)] = True
# base token -> index 0..3 (A C G T), -1 for anything else
BASE_INDEX = np.full(VOCAB_SIZE, -1, dtype=np.int64)
BASE_INDEX[BASE_IDS] = np.arange(4)


def _as_bytes(seq: str | bytes) -> np.ndarray:
    if isinstance(seq, str):
        try:
            seq = seq.encode("ascii")
        except UnicodeEncodeError as exc:
            raise InputError(f"sequence contains a non-ASCII character at offset {exc.start}") from None
    return np.frombuffer(seq, dtype=np.uint8)


def encode(seq: str | bytes, return_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Encode one sequence to int64 token ids; with ``return_mask`` also the soft-mask (lowercase) track."""
    raw = _as_bytes(seq)
    tokens = _ENCODE[raw].astype(np.int64)
    if return_mask:
        return tokens, _IS_LOWER[raw]
    return tokens


def decode(tokens: np.ndarray | torch.Tensor | Sequence[int]) -> str:
    """Decode token ids to a string; EOD/PAD and other non-printable ids are dropped."""
    arr = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    arr = arr.astype(np.int64).ravel()
    arr = arr[(arr >= 32) & (arr < 127)]
    return arr.astype(np.uint8).tobytes().decode("ascii")


def encode_batch(seqs: Sequence[str | bytes], pad_to: int | None = None, as_torch: bool = True):
    """Encode several sequences into one (B, L) array, right-padded with PAD_ID to the longest (or ``pad_to``)."""
    arrays = [encode(s) for s in seqs]
    length = max((len(a) for a in arrays), default=0) if pad_to is None else pad_to
    out = np.full((len(arrays), length), PAD_ID, dtype=np.int64)
    for i, a in enumerate(arrays):
        if len(a) > length:
            raise InputError(f"sequence {i} has length {len(a)} > pad_to={length}")
        out[i, : len(a)] = a
    return torch.from_numpy(out) if as_torch else out


def decode_batch(tokens: np.ndarray | torch.Tensor) -> list[str]:
    """Decode a (B, L) batch of token ids to strings (PAD/EOD dropped)."""
    return [decode(row) for row in tokens]


def reverse_complement(tokens: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Reverse complement of token ids along the last axis (works for numpy arrays and torch tensors)."""
    if isinstance(tokens, torch.Tensor):
        table = torch.as_tensor(_COMPLEMENT, device=tokens.device)
        return table[tokens.long()].flip(-1).to(tokens.dtype)
    arr = np.asarray(tokens)
    return _COMPLEMENT[arr.astype(np.int64)][..., ::-1].astype(arr.dtype)


def reverse_complement_str(seq: str) -> str:
    """Reverse complement of a sequence string (uppercase result; IUPAC codes become N)."""
    return decode(reverse_complement(encode(seq)))


class Tokenizer:
    """Object wrapper around the module functions, for code that expects a tokenizer instance."""

    version = TOKENIZER_VERSION
    vocab_size = VOCAB_SIZE
    eod_id = EOD_ID
    pad_id = PAD_ID

    encode = staticmethod(encode)
    decode = staticmethod(decode)
    encode_batch = staticmethod(encode_batch)
    decode_batch = staticmethod(decode_batch)
    reverse_complement = staticmethod(reverse_complement)
