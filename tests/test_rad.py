"""RAD pieces: bad input, the mask channel reaching the discriminator, timesteps as ints."""
import pytest
import torch

from erase_core.core import InputError
from erase_core.models.presets import build_unet
from erase_core.training.rad import (LatentDiscriminator, discriminator_inputs, discriminator_mask,
                                     generator_loss_from_logits, rad_discriminator_loss, weighted_loss)


def test_bad_input():
    unet = build_unet('tiny')
    bad = build_unet('tiny'); bad.register_to_config(in_channels=4)
    with pytest.raises(InputError, match=r'needs an inpainting UNet \(2C \+ 1 inputs'):
        LatentDiscriminator(bad)
    assert build_unet('toy').config.in_channels == 33 and LatentDiscriminator(build_unet('toy')).heads   # 16 latent channels: 2 x 16 + 1
    with pytest.raises(InputError, match='heads must name'):
        LatentDiscriminator(unet, heads=('up',))
    D = LatentDiscriminator(unet)
    z = torch.randn(1, 4, 16, 16)
    with pytest.raises(InputError, match='mask must be'):
        D(z, torch.ones(1, 16, 16), z, 1, torch.randn(1, 8, 32))
    with pytest.raises(InputError, match='differ'):
        D(z, torch.ones(1, 1, 16, 16), torch.randn(1, 4, 8, 8), 1, torch.randn(1, 8, 32))
    with pytest.raises(InputError, match='variant must be'):
        discriminator_mask({}, 'wgan')
    with pytest.raises(InputError, match="no 'effect_mask'"):
        discriminator_mask({'mask': torch.ones(1)})
    with pytest.raises(InputError, match='form must be'):
        generator_loss_from_logits(torch.zeros(2), 'hinge')
    with pytest.raises(InputError, match='differ'):
        discriminator_inputs(z, torch.randn(1, 4, 8, 8), 0, None)
    with pytest.raises(InputError, match='do not match'):
        weighted_loss(dict(a=torch.tensor(1.0)), dict(a=1.0, b=2.0))


def test_mask_channel_reaches_the_logits_and_int_timesteps():
    torch.manual_seed(0)
    D = LatentDiscriminator(build_unet('tiny', seed=1)).eval()
    z, ref, c = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16), torch.randn(2, 8, 32)
    obj = torch.zeros(2, 1, 32, 32); obj[..., 4:12, 4:12] = 1
    eff = obj.clone(); eff[..., 12:24, 4:16] = 1
    with torch.no_grad():
        a, b = D(z, obj, ref, 300, c), D(z, eff, ref, 300, c)
        assert (a - b).abs().max() > 1e-4                               # the discriminator sees which region is judged
        l_int = rad_discriminator_loss(D, z, z + 1, eff, ref, 300, c)
        l_vec = rad_discriminator_loss(D, z, z + 1, eff, ref, torch.tensor([300, 300]), c)
    assert torch.allclose(l_int, l_vec)
