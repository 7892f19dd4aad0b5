"""FPAC's input contract (its equivalences live in nbs/45_caching.fpac.ipynb)."""
import pytest
import torch

from erase_core.caching.fpac import FPAC, transformer_blocks
from erase_core.core import InputError
from erase_core.models.presets import load_components
from erase_core.sampling.pipeline import ErasePipeline


@pytest.fixture(scope='module')
def pipe():
    return ErasePipeline(load_components('tiny'), 'ddim', 2)


@pytest.mark.parametrize('kw,match', [
    (dict(foreground='bbox'), "foreground must be 'mask', 'attention' or a callable"),
    (dict(ragged='sometimes'), "ragged must be"),
    (dict(threshold='mean'), "threshold must be 'otsu' or a number"),
    (dict(reuse='first'), "reuse must be"),
    (dict(blocks=['down_blocks.7']), "no transformer blocks under"),
    (dict(sparse_resnets=True, resnet_stats='mean'), "resnet_stats must be 'cached' or 'current'"),
    (dict(sparse_resnets=True, tile=0), "tile must be None or a positive int"),
    (dict(sparse_resnets=True, tile=2.5), "tile must be None or a positive int"),
])
def test_bad_arguments_name_what_is_expected(pipe, kw, match):
    with pytest.raises(InputError, match=match):
        FPAC(pipe, **kw)


def test_unsupported_blocks_are_refused(pipe):
    from diffusers.models.attention_processor import AttnProcessor2_0
    blk = transformer_blocks(pipe.unet)['down_blocks.1.attentions.0.transformer_blocks.0']
    class Custom(AttnProcessor2_0): pass
    old = blk.attn1.processor
    blk.attn1.set_processor(Custom())
    try:
        with pytest.raises(InputError, match='down_blocks.1.attentions.0.transformer_blocks.0 is not one'):
            FPAC(pipe)
    finally:
        blk.attn1.set_processor(old)


def test_enable_twice_and_disable_restore_the_unet(pipe):
    img, m = torch.rand(3, 32, 32), torch.zeros(1, 32, 32)
    m[:, 8:20, 8:20] = 1
    ref, = pipe(img, m, output_type='pt')
    f = FPAC(pipe, foreground='attention')
    f.enable(); f.enable()
    cached, = pipe(img, m, output_type='pt')
    f.disable(); f.disable()
    again, = pipe(img, m, output_type='pt')
    assert torch.equal(ref, again) and not torch.equal(ref, cached)
    assert not any(hasattr(b, '_diffusers_hook') and b._diffusers_hook.hooks for b in f.blocks.values())


def test_outside_a_sampling_loop_the_hooks_do_nothing(pipe):
    x = torch.randn(1, 9, 16, 16)
    e = pipe.components.prompt_embeds
    with torch.no_grad():
        ref = pipe.unet(x, 999, encoder_hidden_states=e).sample
        with FPAC(pipe):
            got = pipe.unet(x, 999, encoder_hidden_states=e).sample
    assert torch.equal(ref, got)


def test_unsupported_resnet_blocks_are_refused(pipe):
    rb = pipe.unet.down_blocks[0].resnets[0]
    old = rb.time_embedding_norm
    rb.time_embedding_norm = 'scale_shift'
    try:
        with pytest.raises(InputError, match='down_blocks.0.resnets.0 is not one'):
            FPAC(pipe, sparse_resnets=True)
        FPAC(pipe)                                           # dense ResNets: no check, no refusal
    finally:
        rb.time_embedding_norm = old


def test_sparse_hooks_come_off(pipe):
    x, m = torch.rand(3, 32, 32), torch.zeros(1, 32, 32)
    m[:, 8:20, 8:20] = 1
    before = pipe(x, m, seed=1, output_type='pt')[0]
    with FPAC(pipe, sparse_resnets=True, tile=4) as f:
        assert all(hasattr(mod, '_diffusers_hook') for mod in f.convs.values())
        pipe(x, m, seed=1, output_type='pt')
    assert torch.equal(pipe(x, m, seed=1, output_type='pt')[0], before)


def test_decode_option_is_checked():
    with pytest.raises(InputError, match="decode must be 'full' or 'tiles'"):
        ErasePipeline(load_components('tiny'), 'ddim', 2, decode='tile')
