"""Depth growth (``init_layers``): the grown model computes the source model's function; bad maps are refused."""

from __future__ import annotations

import pytest
import torch

from genomod.errors import ConfigError
from genomod.model.grow import check_layer_map, grow_depth
from tests.model_helpers import tiny_test_model


def test_grown_model_computes_the_source_function_and_new_layers_train() -> None:
    src = tiny_test_model(seed=1)
    new = tiny_test_model(seed=2, layer_types=("SE", "MR", "SE", "LI", "MHA", "MHA"))
    layer_map = [0, 1, None, 2, 3, None]
    grown = grow_depth(new.state_dict(), src.state_dict(), layer_map)
    new.load_state_dict(grown)
    x = torch.randint(0, 512, (2, 40))
    with torch.no_grad():
        assert torch.equal(src(x).logits, new(x).logits)
    assert torch.equal(grown["blocks.3.projections.weight"], src.state_dict()["blocks.2.projections.weight"])
    assert not grown["blocks.2.projections.weight"].eq(0).all()  # a new layer keeps its fresh mixer weights
    for name in ("blocks.2.out_filter_dense.weight", "blocks.2.mlp.l3.weight", "blocks.5.inner_mha_cls.out_proj.bias"):
        assert grown[name].eq(0).all()
    new.train()  # the new layers' residual outputs get gradients, so training moves them off zero
    new(x).logits.logsumexp(-1).sum().backward()
    assert new.blocks[2].out_filter_dense.weight.grad.abs().sum() > 0
    assert new.blocks[5].mlp.l3.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("layer_map", "match"), [
    ([0, 1, 2], "3 entries for a model of 4 layers"),
    ([0, 1, 3, 2], r"init_layers\[2\]: layer 2 is LI but init_from layer 3 is MHA"),
    ([0, 1, 2, 7], r"init_layers\[3\]: 7 is not a layer"),
    ([0, True, 2, 3], r"init_layers\[1\]"),
])
def test_bad_layer_maps_are_refused(layer_map: list, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_layer_map(layer_map, ["SE", "MR", "LI", "MHA"], ["SE", "MR", "LI", "MHA"])


def test_width_mismatch_names_the_tensor() -> None:
    src = tiny_test_model(seed=1)
    other = tiny_test_model(seed=1, name="x")
    state = {k: (torch.zeros(3) if k == "blocks.0.pre_norm.scale" else v) for k, v in src.state_dict().items()}
    with pytest.raises(ConfigError, match=r"blocks\.0\.pre_norm\.scale has shape \(3,\)"):
        grow_depth(other.state_dict(), state, [0, 1, 2, 3])
