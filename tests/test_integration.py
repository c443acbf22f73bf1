"""End to end on randomly initialised real architectures: find the whole-MLP sites, record their inputs, fit a
TaylorMLP with every recorded input as an expansion point, swap it in, and check the model reproduces its own
outputs on those inputs (the expansion is exact at its expansion points, at every order)."""
import pytest
import torch
from torch import nn

from taylormlp.adapt import find_mlp_sites, hook_points, swapped
from taylormlp.taylor import TaylorMLP


def _record_inputs(model, sites, call):
    "Inputs of each site during one forward pass, flattened to [tokens, d_in]."
    seen, hooks = {}, []
    for s in sites:
        module, _ = hook_points(model, s)
        hooks.append(module.register_forward_hook(
            lambda m, i, o, name=s.name: seen.__setitem__(name, i[0].detach().reshape(-1, i[0].shape[-1]))))
    try:
        with torch.no_grad(): reference = call()
    finally:
        for h in hooks: h.remove()
    return seen, reference


def _reproduces(model, call, order, sites=None, atol=1e-4):
    model.eval()
    sites = sites or find_mlp_sites(model)
    inputs, reference = _record_inputs(model, sites, call)
    replacements = {s.name: TaylorMLP.fit(s.function, inputs[s.name], order=order, centres=inputs[s.name])
                    for s in sites}
    with swapped(model, replacements):
        with torch.no_grad(): out = call()
    with torch.no_grad(): restored = call()
    torch.testing.assert_close(restored, reference)                     # the swap was undone
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=atol)    # exact at the expansion points
    return sites


@pytest.mark.parametrize('order', [1, 2])
def test_torchvision_vgg16_bn_head(order):
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.vgg16_bn(num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    sites = _reproduces(model, lambda: model(x), order)
    assert [s.name for s in sites] == ['classifier'] and sites[0].d_in == 25088


def test_cifar_style_vgg16_bn_head_order0():
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.vgg16_bn(num_classes=10)
    model.avgpool, model.classifier[0] = nn.Identity(), nn.Linear(512, 4096)
    x = torch.randn(3, 3, 32, 32)
    sites = _reproduces(model, lambda: model(x), 0)
    assert sites[0].d_in == 512 and sites[0].hidden == [4096, 4096]


@pytest.mark.parametrize('order', [1, 2])
def test_timm_deit_tiny(order):
    import timm
    torch.manual_seed(0)
    model = timm.create_model('deit_tiny_patch16_224', pretrained=False)
    x = torch.randn(1, 3, 224, 224)
    sites = _reproduces(model, lambda: model(x), order)
    assert len(sites) == 12 and {s.d_in for s in sites} == {192}


def test_timm_mixer_b16_channel_mlps():
    import timm
    torch.manual_seed(0)
    model = timm.create_model('mixer_b16_224', pretrained=False)
    x = torch.randn(1, 3, 224, 224)
    all_sites = find_mlp_sites(model)
    assert len(all_sites) == 12 and all(s.kind == 'mixer_channel' and s.d_in == 768 for s in all_sites)
    # every site's table is 196 x 768 x 768 floats: swap the first and the last to keep memory small
    _reproduces(model, lambda: model.forward_features(x), 1, sites=[all_sites[0], all_sites[-1]], atol=1e-3)


@pytest.mark.parametrize('order', [0, 1, 2])
def test_small_bert(order):
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                 vocab_size=100))
    ids = torch.randint(0, 100, (2, 9))
    mask = torch.ones_like(ids); mask[1, 6:] = 0
    sites = _reproduces(model, lambda: model(input_ids=ids, attention_mask=mask).last_hidden_state, order)
    assert [s.kind for s in sites] == ['bert_ffn'] * 2
