"""Re-parameterization is exact: training form == deploy form to float rounding."""
from __future__ import annotations


import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from srdeploy.models import RepConv, create_model, get_spec, list_models, reparameterize
from srdeploy.models.registry import init_from_deploy

TOL = 1e-5

BRANCH_POOL = ["3x3", "1x1", "identity", "expand:1", "expand:2", "expand:4"]


def _randomize(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@settings(max_examples=60, deadline=None)
@given(
    cin=st.integers(1, 9),
    cout=st.integers(1, 9),
    branches=st.sets(st.sampled_from(BRANCH_POOL), min_size=1, max_size=5),
    bias=st.booleans(),
    hw=st.tuples(st.integers(1, 11), st.integers(1, 11)),
    seed=st.integers(0, 2**16),
)
def test_repconv_fusion_is_exact(cin, cout, branches, bias, hw, seed):
    if "identity" in branches and cin != cout:
        cout = cin
    block = RepConv(cin, cout, 3, branches=sorted(branches), bias=bias)
    _randomize(block, seed)
    x = torch.randn(2, cin, *hw, generator=torch.Generator().manual_seed(seed + 1))
    fused = block.to_conv()
    with torch.no_grad():
        ref = block(x)
        diff = (ref - fused(x)).abs().max().item()
    # float32 rounding grows with the values summed: the bound is relative to the output's magnitude
    # (Hypothesis found 1.24e-5 on outputs of magnitude ~10 with three chained expand branches)
    bound = TOL * max(1.0, ref.abs().max().item())
    assert diff <= bound, f"branches={sorted(branches)} bias={bias}: max |diff| {diff} > {bound}"


def test_bias_padding_is_what_makes_the_border_exact():
    """A zero-padded 1x1->3x3 branch with bias does NOT fuse exactly: the rule matters."""
    block = RepConv(4, 4, 3, branches=["expand:2"], bias=True)
    _randomize(block, 0)
    x = torch.randn(1, 4, 8, 8)
    squeeze, spread = block.branches["expand2"]
    naive = spread(F.pad(squeeze(x), (1, 1, 1, 1)))  # zeros, not the bias
    with torch.no_grad():
        fused = block.to_conv()(x)
        assert (block(x) - fused).abs().max().item() <= TOL
        border_err = (naive - fused).abs()
        assert border_err[..., 1:-1, 1:-1].max().item() <= TOL  # interior agrees
        assert border_err.max().item() > 1e-2  # the border does not


@pytest.mark.parametrize("name", [n for n in list_models() if get_spec(n).train_branches])
def test_training_form_fuses_exactly_with_random_weights(name):
    spec = get_spec(name)
    torch.manual_seed(1)  # PyTorch's default init: every branch random, activations stay O(1)
    train = create_model(name, pretrained=False, form="train")
    assert any(isinstance(m, RepConv) for m in train.modules())
    train.eval()
    deploy = reparameterize(train)
    assert not any(isinstance(m, RepConv) for m in deploy.modules())
    # the deploy form has exactly the deploy architecture's keys (so it loads official checkpoints)
    assert set(deploy.state_dict()) == set(spec.builder(spec.scales[0], None).state_dict())
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        diff = (train(x) - deploy(x)).abs().max().item()
    assert diff <= TOL, diff


def test_unknown_branch_and_identity_mismatch_are_rejected():
    with pytest.raises(ValueError):
        RepConv(4, 4, 3, branches=["5x5"])
    with pytest.raises(ValueError):
        RepConv(4, 6, 3, branches=["3x3", "identity"])


@pytest.mark.parametrize("branches", [("3x3", "identity", "1x1"), ("3x3", "expand:2", "expand:4")])
def test_load_fused_reproduces_a_deploy_conv(branches):
    conv = nn.Conv2d(5, 5, 3, padding=1)
    _randomize(conv, 3)
    block = RepConv(5, 5, 3, branches=branches)
    _randomize(block, 4)
    block.load_fused(conv.weight.data, conv.bias.data)
    x = torch.randn(1, 5, 9, 7)
    with torch.no_grad():
        assert (block(x) - conv(x)).abs().max().item() <= TOL


def test_init_from_deploy_gives_training_form_the_deploy_function():
    torch.manual_seed(5)
    deploy = create_model("dipnet_lite", pretrained=False)
    train = create_model("dipnet_lite", pretrained=False, form="train")
    init_from_deploy(train, deploy)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (train.eval()(x) - deploy(x)).abs().max().item() <= TOL
