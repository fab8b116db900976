"""Tokenizer: Evo 2 byte ids, soft-mask track, IUPAC -> N, reverse complement, batches."""

import numpy as np
import pytest
import torch

from genomod.errors import InputError
from genomod.tokenizer import (
    EOD_ID,
    N_ID,
    PAD_ID,
    TOKENIZER_VERSION,
    VOCAB_SIZE,
    Tokenizer,
    decode,
    decode_batch,
    encode,
    encode_batch,
    reverse_complement,
    reverse_complement_str,
)


def test_ids_are_ascii_bytes():
    assert encode("ACGTN").tolist() == [65, 67, 71, 84, 78]
    assert (EOD_ID, PAD_ID, VOCAB_SIZE, N_ID) == (0, 1, 512, 78)
    assert TOKENIZER_VERSION == Tokenizer.version


def test_lowercase_same_token_with_mask():
    tokens, mask = encode("acGTn", return_mask=True)
    assert tokens.tolist() == encode("ACGTN").tolist()
    assert mask.tolist() == [True, True, False, False, True]
    assert encode(b"acgt").tolist() == [65, 67, 71, 84]


def test_iupac_and_other_bytes_become_n():
    assert decode(encode("RYSWKMBDHV-.*x")) == "N" * 14


def test_non_ascii_is_input_error():
    with pytest.raises(InputError):
        encode("ACGé")


def test_reverse_complement_numpy_and_torch():
    seq = "AACGTNRc"
    assert reverse_complement_str(seq) == "GNNACGTT"
    arr = encode(seq)
    rc = reverse_complement(arr)
    assert isinstance(rc, np.ndarray) and decode(rc) == "GNNACGTT"
    t = torch.from_numpy(encode_batch(["ACGT", "AAC"], as_torch=False))
    rct = reverse_complement(t)
    assert isinstance(rct, torch.Tensor) and rct.dtype == t.dtype
    assert decode(rct[0]) == "ACGT"
    # PAD stays PAD (moves to the front): rc of [A A C PAD] = [PAD G T T]
    assert rct[1].tolist() == [PAD_ID, 71, 84, 84]
    assert np.array_equal(reverse_complement(reverse_complement(arr)), arr)


def test_batch_encode_decode():
    batch = encode_batch(["ACGT", "A", ""])
    assert isinstance(batch, torch.Tensor) and tuple(batch.shape) == (3, 4)
    assert batch[1].tolist() == [65, PAD_ID, PAD_ID, PAD_ID]
    assert decode_batch(batch) == ["ACGT", "A", ""]
    assert encode_batch(["AC"], pad_to=5, as_torch=False).shape == (1, 5)
    with pytest.raises(InputError):
        encode_batch(["ACGTAC"], pad_to=3)


def test_decode_drops_specials():
    assert decode([EOD_ID, 65, PAD_ID, 84, 300]) == "AT"
