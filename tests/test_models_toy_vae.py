"""The toy VAE trainer: saves a loadable diffusers checkpoint; PSNR is measured, not assumed."""
import json

import numpy as np
import pytest
import torch

from erase_core.core import InputError
from erase_core.data.toyworld import make_toy_scenes
from erase_core.models.toy_vae import load_toy_vae, reconstruct, toy_vae_psnr, train_toy_vae


def test_psnr_by_hand():
    class Identity(torch.nn.Module):
        "A fake VAE whose reconstruction is the input plus a constant 0.1 (in [0, 1] units): PSNR = 20 dB."
        def __init__(self): super().__init__(); self.p = torch.nn.Parameter(torch.zeros(1)); self.training = False
        def encode(self, x):
            class D:
                latent_dist = type('L', (), {'mode': lambda self_: x})()
            return D()
        def decode(self, z): return type('O', (), {'sample': z + 0.2})()
    imgs = [np.full((8, 8, 3), 50, np.uint8)] * 2
    assert abs(toy_vae_psnr(Identity(), imgs) - 20.0) < 0.01
    assert reconstruct(Identity(), imgs).shape == (2, 3, 8, 8)


def test_train_save_load_roundtrip(tmp_path):
    vae, rep = train_toy_vae(tmp_path / 'vae', n_scenes=8, steps=2, batch_size=2, n_held_out=4, progress=False)
    saved = json.loads((tmp_path / 'vae/training.json').read_text())
    assert saved['steps'] == 2 and np.isfinite(saved['psnr_held_out']) and saved['scale'] == 'toy'
    back = load_toy_vae(tmp_path / 'vae')
    held = make_toy_scenes(3, seed=77)
    assert abs(toy_vae_psnr(back, held) - toy_vae_psnr(vae, held)) < 1e-4
    assert abs(back.config.scaling_factor * rep['latent_std'] - 1) < 1e-3
    assert tuple(back.config.block_out_channels) == (32, 64, 64) and back.config.latent_channels == 4


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError): train_toy_vae(tmp_path, steps=0)
    with pytest.raises(InputError, match='crop'): train_toy_vae(tmp_path, n_scenes=2, steps=1, crop=100)
    with pytest.raises(InputError, match='uint8'): toy_vae_psnr(None, [np.zeros((4, 4, 3), np.float32)])


# --- the second toy VAE: 16 channels and a space-to-channel shortcut ---
from erase_core.models.presets import load_vae
from erase_core.models.toy_vae import TOY_VAE_V2, ToyAutoencoderKL, toy_vae_psnr_regions, toy_vae_recipe


def test_v2_recipe_trains_saves_and_loads_through_the_presets_loader(tmp_path):
    vae, rep = train_toy_vae(tmp_path / 'vae', **toy_vae_recipe('v2', n_scenes=8, steps=2, n_held_out=4), progress=False)
    assert type(vae) is ToyAutoencoderKL and rep['world'] == 'v2' and rep['config']['latent_channels'] == 16
    assert set(rep['psnr_held_out_regions']) == {'all', 'object', 'outside'}
    back = load_vae(tmp_path / 'vae', subfolder=None)                  # the class comes from the folder's config
    assert type(back) is ToyAutoencoderKL and back.config.shortcut and back.config.latent_channels == 16
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.allclose(back.decode(back.encode(x).latent_dist.mode()).sample, vae.decode(vae.encode(x).latent_dist.mode()).sample, atol=1e-5)


def test_shortcut_is_linear_in_the_image_and_off_means_plain():
    torch.manual_seed(0)
    v = ToyAutoencoderKL(**TOY_VAE_V2).eval()
    for p in list(v.encoder.parameters()) + list(v.quant_conv.parameters()): torch.nn.init.zeros_(p)
    a, b = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    za, zb, zab = (v.encode(t).latent_dist.mode() for t in (a, b, a + b))
    bias = v.encode(torch.zeros_like(a)).latent_dist.mode()
    assert torch.allclose(zab - bias, (za - bias) + (zb - bias), atol=1e-5)   # with the conv encoder silenced, the latent is linear
    off = ToyAutoencoderKL(**dict(TOY_VAE_V2, shortcut=False))
    assert off.shortcut_in is None and off.shortcut_out is None


def test_region_psnr_by_hand():
    class Shift(torch.nn.Module):
        "Reconstruction = input + 0.2 in [-1, 1] units (0.1 in [0, 1]) in the 4 leftmost columns, exact elsewhere."
        def __init__(self): super().__init__(); self.p = torch.nn.Parameter(torch.zeros(1))
        def encode(self, x): return type('D', (), {'latent_dist': type('L', (), {'mode': lambda s_: x})()})()
        def decode(self, z):
            out = z.clone(); out[..., :, :4] += 0.2
            return type('O', (), {'sample': out})()
    s = make_toy_scenes(1, seed=5)[0]
    s.image[:] = 100; s.object_mask[:] = False; s.object_mask[:, :4] = True
    r = toy_vae_psnr_regions(Shift(), [s])
    assert abs(r['object'] - 20.0) < 0.01 and r['outside'] > 90 and abs(r["all"] - 10 * np.log10(1 / (0.01 * 4 / 64))) < 0.01   # 4 of 64 columns err by 0.1


def test_vae_recipe_names():
    with pytest.raises(InputError, match='v7'): toy_vae_recipe('v7')
