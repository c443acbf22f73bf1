"Every model family with an MLP site, on small random configs of the real classes (transformers, timm; no downloads)."
import math

import pytest
import timm
import torch
import transformers as T
from torch import nn

from taylormlp.adapt import (MLPSite, find_mlp_sites, hook_points, site_from_path, swap, swapped, token_mixing)
from taylormlp.taylor import GatedLinear, LinearActLinear, TaylorMLP


def _fan_in_init(model: nn.Module, seed: int = 0):
    "Weights of std 1/sqrt(fan_in): HF's 0.02 init keeps every pre-activation near 0, where GELU/SiLU are ~linear."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            w = getattr(m, 'weight', None)
            if isinstance(m, (nn.Linear, nn.Conv2d)) or type(m).__name__ == 'Conv1D':
                fan_in = w.shape[0] if type(m).__name__ == 'Conv1D' else w[0].numel()
                w.copy_(torch.randn(w.shape, generator=g) / math.sqrt(fan_in))
                if getattr(m, 'bias', None) is not None: m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return model


def _untrivialise(model: nn.Module):
    "Layer scales of 1e-6/1e-5 and zero-initialised norms make a random block (almost) the identity: set them to 1."
    with torch.no_grad():
        for m in model.modules():
            if isinstance(getattr(m, 'gamma', None), nn.Parameter): m.gamma.fill_(1.0)          # ConvNeXt layer scale
            if type(m).__name__ == 'Scale': m.scale.fill_(1.0)                                # MetaFormer layer/res scale
            if type(m).__name__ == 'LayerScale': m.gamma.fill_(1.0)
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:   # LeViT's bn_weight_init=0
                m.weight.fill_(1.0)
            if type(m).__name__ == 'GlobalResponseNorm': m.weight.fill_(1.0)                 # ConvNeXt-V2 GRN
    return model


def hf_lm(cls, config_cls, **kw):
    torch.manual_seed(0)
    return _fan_in_init(cls(config_cls(**kw))).eval()


LLAMA_LIKE = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, vocab_size=97, max_position_embeddings=64)

# name -> (build, run(model) -> tensor, expected site names, site kind, function class, (d_in, hidden, d_out))
def _ids(model): return torch.randint(3, 97, (2, 7), generator=torch.Generator().manual_seed(1))
def _lm(model): return model(input_ids=_ids(model)).logits
def _hidden(model): return model(input_ids=_ids(model)).last_hidden_state
def _t5(model): ids = _ids(model); return model(input_ids=ids, decoder_input_ids=ids[:, :5]).last_hidden_state
def _pixels(size): return lambda model: model(pixel_values=torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))).last_hidden_state
def _image(size): return lambda model: model.forward_features(torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2)))


FAMILIES = {
    'llama': (lambda: hf_lm(T.LlamaForCausalLM, T.LlamaConfig, **LLAMA_LIKE), _lm,
              [f'model.layers.{i}.mlp' for i in range(2)], 'hf_mlp', GatedLinear, (32, 48, 32)),
    'mistral': (lambda: hf_lm(T.MistralForCausalLM, T.MistralConfig, **LLAMA_LIKE), _lm,
                [f'model.layers.{i}.mlp' for i in range(2)], 'hf_mlp', GatedLinear, (32, 48, 32)),
    'qwen2': (lambda: hf_lm(T.Qwen2ForCausalLM, T.Qwen2Config, **LLAMA_LIKE), _lm,
              [f'model.layers.{i}.mlp' for i in range(2)], 'hf_mlp', GatedLinear, (32, 48, 32)),
    'gemma': (lambda: hf_lm(T.GemmaForCausalLM, T.GemmaConfig, head_dim=16, **LLAMA_LIKE), _lm,   # GeGLU (tanh GELU)
              [f'model.layers.{i}.mlp' for i in range(2)], 'hf_mlp', GatedLinear, (32, 48, 32)),
    'gpt2': (lambda: hf_lm(T.GPT2LMHeadModel, T.GPT2Config, n_embd=32, n_inner=40, n_layer=2, n_head=2, vocab_size=97,
                           n_positions=64, bos_token_id=1, eos_token_id=2), _lm,
             [f'transformer.h.{i}.mlp' for i in range(2)], 'hf_mlp', LinearActLinear, (32, 40, 32)),   # Conv1D
    'opt': (lambda: hf_lm(T.OPTForCausalLM, T.OPTConfig, hidden_size=32, ffn_dim=48, num_hidden_layers=2,
                          num_attention_heads=2, vocab_size=97, word_embed_proj_dim=32, max_position_embeddings=64,
                          activation_function='gelu'), _lm,
            [f'model.decoder.layers.{i}.ffn' for i in range(2)], 'layer_ffn', LinearActLinear, (32, 48, 32)),
    'bloom': (lambda: hf_lm(T.BloomForCausalLM, T.BloomConfig, hidden_size=32, n_layer=2, n_head=2, vocab_size=97), _lm,
              [f'transformer.h.{i}.mlp.ffn' for i in range(2)], 'layer_ffn', LinearActLinear, (32, 128, 32)),
    't5': (lambda: hf_lm(T.T5Model, T.T5Config, d_model=32, d_ff=48, num_layers=1, num_decoder_layers=1, num_heads=2,
                         d_kv=16, vocab_size=97), _t5,
           ['encoder.block.0.layer.1.DenseReluDense', 'decoder.block.0.layer.2.DenseReluDense'], 'hf_mlp',
           LinearActLinear, (32, 48, 32)),
    't5_gated': (lambda: hf_lm(T.T5Model, T.T5Config, d_model=32, d_ff=48, num_layers=1, num_decoder_layers=1,
                               num_heads=2, d_kv=16, vocab_size=97, feed_forward_proj='gated-gelu'), _t5,
                 ['encoder.block.0.layer.1.DenseReluDense', 'decoder.block.0.layer.2.DenseReluDense'], 'hf_mlp',
                 GatedLinear, (32, 48, 32)),
    'distilbert': (lambda: hf_lm(T.DistilBertModel, T.DistilBertConfig, dim=32, hidden_dim=48, n_layers=2, n_heads=2,
                                 vocab_size=97), _hidden,
                   [f'transformer.layer.{i}.ffn' for i in range(2)], 'hf_mlp', LinearActLinear, (32, 48, 32)),
    'vit_hf': (lambda: hf_lm(T.ViTModel, T.ViTConfig, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                             num_attention_heads=2, image_size=16, patch_size=4), _pixels(16),
               [f'layers.{i}.mlp' for i in range(2)], 'hf_mlp', LinearActLinear, (32, 48, 32)),
    'clip_vision': (lambda: hf_lm(T.CLIPVisionModel, T.CLIPVisionConfig, hidden_size=32, intermediate_size=48,
                                  num_hidden_layers=2, num_attention_heads=2, image_size=16, patch_size=4), _pixels(16),
                    [f'encoder.layers.{i}.mlp' for i in range(2)], 'hf_mlp', LinearActLinear, (32, 48, 32)),
    'siglip_vision': (lambda: hf_lm(T.SiglipVisionModel, T.SiglipVisionConfig, hidden_size=32, intermediate_size=48,
                                    num_hidden_layers=2, num_attention_heads=2, image_size=16, patch_size=4),
                      lambda m: m(pixel_values=torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))).pooler_output,
                      ['encoder.layers.0.mlp', 'encoder.layers.1.mlp', 'head.mlp'],
                      'hf_mlp', LinearActLinear, (32, 48, 32)),
    'convnext_conv_mlp': (lambda: _untrivialise(timm.models.convnext.ConvNeXt(num_classes=3, depths=(1, 1, 1, 1),
                                                                            dims=(16, 24, 32, 40), conv_mlp=True)).eval(),
                          _image(32), [f'stages.{i}.blocks.0.mlp' for i in range(4)], 'conv_mlp', LinearActLinear,
                          (16, 64, 16)),
    'poolformer': (lambda: _untrivialise(timm.models.metaformer.MetaFormer(   # poolformer_s12's recipe, one block a stage
                       num_classes=3, depths=(1, 1, 1, 1), dims=(32, 48, 64, 80), downsample_norm=None, mlp_act=nn.GELU,
                       mlp_bias=True, norm_layers=timm.models.metaformer.GroupNorm1, layer_scale_init_values=1e-5,
                       res_scale_init_values=None, use_mlp_head=False)).eval(), _image(32),
                   [f'stages.{i}.blocks.0.mlp' for i in range(4)], 'conv_mlp', LinearActLinear, (32, 128, 32)),
    'levit': (lambda: _untrivialise(_fan_in_init(timm.models.levit.Levit(img_size=128, num_classes=3, embed_dim=(32, 48),
                                                                         key_dim=8, depth=(1, 1), num_heads=(2, 3)))).eval(),
              _image(128), ['stages.0.blocks.0.mlp', 'stages.1.downsample.mlp', 'stages.1.blocks.0.mlp'], 'timm_mlp',
              None, (32, 64, 32)),                                                                  # Linear+BN inside
    'norm_mlp': (lambda: _untrivialise(timm.models.vision_transformer.VisionTransformer(
                    img_size=16, patch_size=4, num_classes=3, embed_dim=32, depth=2, num_heads=2, mlp_ratio=1.5,
                    mlp_layer=lambda in_features, hidden_features, **kw: timm.layers.Mlp(
                        in_features, hidden_features, act_layer=nn.GELU, norm_layer=nn.LayerNorm))).eval(), _image(16),
                 [f'blocks.{i}.mlp' for i in range(2)], 'timm_mlp', timm.layers.Mlp, (32, 48, 32)),  # LayerNorm inside
}


def _capture(model, sites, run):
    "Each site's input and output rows in the model's own forward pass, through hook_points."
    seen, handles = {}, []
    for s in sites:
        first, last = hook_points(model, s)
        handles.append(first.register_forward_hook(lambda m, i, o, n=s.name: seen.setdefault(n, {}).update(x=i[0])))
        handles.append(last.register_forward_hook(lambda m, i, o, n=s.name: seen[n].update(y=o)))
    try:
        with torch.no_grad(): out = run(model)
    finally:
        for h in handles: h.remove()
    return out, seen


@pytest.mark.parametrize('family', list(FAMILIES))
def test_family(family):
    build, run, names, kind, fn_cls, (d_in, hidden, d_out) = FAMILIES[family]
    model = build()
    sites = find_mlp_sites(model)
    assert [s.name for s in sites] == names
    assert {s.kind for s in sites} == {kind} and all(len(s.hidden) == 1 for s in sites)
    assert (sites[0].d_in, sites[0].hidden, sites[0].d_out) == (d_in, [hidden], d_out)
    if fn_cls is not None: assert all(type(s.function) is fn_cls for s in sites)
    before = dict(model.named_modules())
    ref, seen = _capture(model, sites, run)
    assert set(seen) == set(names)
    replacements = {}
    for s in sites:
        x, y = seen[s.name]['x'], seen[s.name]['y']
        rows = x.reshape(-1, s.d_in)
        with torch.no_grad():   # the site's function is the module's own computation inside the model
            torch.testing.assert_close(s.function(x), y, atol=1e-5, rtol=1e-4)
            fx = s.function(rows)
        for order in (1, 2):    # k=8: exact at the centres; near a centre the error is second (third) order
            tm = TaylorMLP.fit(s.function, rows, k=min(8, torch.unique(rows, dim=0).shape[0]), order=order)
            with torch.no_grad():
                c = tm.centres
                torch.testing.assert_close(tm(c), s.function(c), atol=1e-5, rtol=1e-4)
                step = 1e-3 * torch.randn(c.shape, generator=torch.Generator().manual_seed(order)) * c.std()
                near = c + step
                err0 = (s.function(c) - s.function(near)).abs().max()
                err = (tm(near) - s.function(near)).abs().max()
            assert err < 0.05 * err0, (order, float(err), float(err0))
        # order 0 with the site's actual inputs as centres: the whole swapped model must reproduce its outputs
        replacements[s.name] = TaylorMLP(rows.detach().clone(), fx.detach().clone())
    with swapped(model, replacements):
        with torch.no_grad(): out = run(model)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        with torch.no_grad():   # and something else than F changes them
            shifted = {n: TaylorMLP(r.centres, r.values * 0.5) for n, r in replacements.items()}
    with swapped(model, shifted):
        with torch.no_grad(): assert (run(model) - ref).abs().max() > 1e-2 * ref.abs().max()
    with torch.no_grad(): assert torch.equal(run(model), ref)                           # restore is bit-exact
    after = dict(model.named_modules())
    assert after.keys() == before.keys() and all(after[n] is before[n] for n in before)


def test_gated_site_from_path_reports_one_hidden_width():
    model = FAMILIES['llama'][0]()
    s = site_from_path(model, 'model.layers.0.mlp')
    assert (s.kind, s.d_in, s.hidden, s.d_out) == ('module', 32, [48], 32) and isinstance(s.function, GatedLinear)
    assert s.function.fc_gate is model.model.layers[0].mlp.gate_proj


def test_gpt2_conv1d_shares_weights():
    model = FAMILIES['gpt2'][0]()
    s = find_mlp_sites(model)[0]
    with torch.no_grad(): model.transformer.h[0].mlp.c_fc.weight.mul_(2)   # later edits of the model are seen
    x = torch.randn(3, 32)
    with torch.no_grad():
        torch.testing.assert_close(s.function(x), model.transformer.h[0].mlp(x))


def test_token_mixing_blocks_are_refused_with_the_reason():
    torch.manual_seed(0)
    enc = nn.Sequential(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)).eval()
    with pytest.raises(ValueError, match="not a per-token function: each row's output depends on the other rows"):
        site_from_path(enc, '0')
    fake = MLPSite('0', 'module', enc[0], 16, 16, [32])          # a hand-made site cannot sneak past swap either
    with pytest.raises(ValueError, match="Site '0' .* is not a per-token function"):
        swap(enc, fake, nn.Identity())
    assert isinstance(enc[0], nn.TransformerEncoderLayer)
    assert token_mixing(nn.Sequential(nn.Linear(16, 8), nn.LayerNorm(8)), 16) is None

    gmlp = timm.models.mlp_mixer.MlpMixer(num_classes=3, img_size=64, patch_size=16, num_blocks=2, embed_dim=32,
                                          mlp_ratio=6, block_layer=timm.models.mlp_mixer.SpatialGatingBlock,
                                          mlp_layer=timm.layers.GatedMlp)   # gmlp_ti16_224's recipe, smaller
    found = find_mlp_sites(gmlp, explain=True)
    assert list(found) == [] and [k.name for k in found.skipped] == ['blocks.0.mlp_channels', 'blocks.1.mlp_channels']
    assert all('mixes tokens' in k.reason and 'not a per-token function as a whole' in k.hint for k in found.skipped)
    with pytest.raises(ValueError, match=r"No MLP sites(.|\n)*skipped blocks.0.mlp_channels \(GatedMlp\): mixes tokens"):
        find_mlp_sites(gmlp)
    with pytest.raises(ValueError, match="spatial gating unit"):
        site_from_path(gmlp, 'blocks.0.mlp_channels')

    v2 = _untrivialise(timm.create_model('convnextv2_atto', pretrained=False, num_classes=3, depths=(1, 1, 1, 1)))
    found = find_mlp_sites(v2, explain=True)
    mlps = [k for k in found.skipped if k.cls == 'GlobalResponseNormMlp']
    assert list(found) == [] and len(mlps) == 4
    assert all('mixes tokens' in k.reason and 'global response norm' in k.hint for k in mlps)


def test_explain_lists_what_was_skipped():
    pvt = timm.create_model('pvt_v2_b0', pretrained=False, num_classes=3, depths=(1, 1, 1, 1))
    found = find_mlp_sites(pvt, explain=True)
    assert list(found) == [] and {k.cls for k in found.skipped} == {'MlpWithDepthwiseConv'}
    assert "extra forward arguments" in found.skipped[0].reason and "['feat_size']" in found.skipped[0].reason

    class DepthConvFc(nn.Module):   # MLP-shaped, but its fc1 is a 3x3 convolution
        def __init__(self):
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Conv2d(8, 16, 3, padding=1), nn.GELU(), nn.Conv2d(16, 8, 1)
        def forward(self, x): return self.fc2(self.act(self.fc1(x)))
    found = find_mlp_sites(nn.Sequential(DepthConvFc()), explain=True)
    assert "unsupported layer type: `fc1` is a Conv2d" in found.skipped[0].reason

    mixer = timm.models.mlp_mixer.MlpMixer(num_classes=3, img_size=32, patch_size=16, num_blocks=1, embed_dim=32)
    found = find_mlp_sites(mixer, explain=True)
    assert [s.name for s in found] == ['blocks.0.mlp_channels']
    assert [k.name for k in found.skipped] == ['blocks.0.mlp_tokens'] and "kind 'mixer_token' not in kinds" in found.skipped[0].reason
    assert 'site    blocks.0.mlp_channels' in found.explanation() and 'skipped blocks.0.mlp_tokens' in found.explanation()
