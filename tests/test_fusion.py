"""Attention-guided fusion: bad input, sizes, and the device/dtype it keeps."""
import pytest
import torch

from erase_core.core import InputError
from erase_core.sampling.fusion import attention_fusion, ellipse_kernel, fusion_alpha, fusion_sizes


def test_bad_input():
    g = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match='attn_map must be'):
        attention_fusion(g, g, torch.rand(4, 4))
    with pytest.raises(InputError, match='attn_map must be'):
        attention_fusion(g, g, torch.rand(1, 2, 4, 4))
    with pytest.raises(InputError, match='differ in shape'):
        attention_fusion(g, torch.rand(1, 3, 16, 8), torch.rand(1, 4, 4))
    with pytest.raises(InputError, match='generated must be'):
        attention_fusion(g[0], g, torch.rand(1, 4, 4))
    with pytest.raises(InputError, match='kernel size'):
        ellipse_kernel(0)


def test_sizes_and_shapes():
    assert fusion_sizes(64, 64) == dict(dilate_size=3, blur_size=1, blur_sigma=0.25)
    hard, alpha = fusion_alpha(torch.rand(2, 1, 3, 5), (24, 40))       # (B,1,h,w) maps, non-square image
    assert hard.shape == alpha.shape == (2, 1, 24, 40) and set(hard.unique().tolist()) <= {0.0, 1.0}


def test_keeps_dtype():
    g, x = torch.rand(1, 3, 32, 32, dtype=torch.float64), torch.rand(1, 3, 32, 32, dtype=torch.float64)
    out = attention_fusion(g, x, torch.rand(1, 4, 4), color_fix=True)
    assert out.dtype == torch.float64 and out.shape == g.shape and 0 <= out.min() and out.max() <= 1


def test_threshold_at_128_and_129_of_255():
    # the authors: the map as an 8-bit image (v * 255 truncated), kept where OpenCV's THRESH_BINARY at 128 passes it
    from erase_core.sampling.fusion import binarise_map
    v = torch.tensor([128 / 255, 129 / 255])
    assert binarise_map(v).tolist() == [0.0, 1.0]                 # floor(128.0) = 128 is not > 128; floor(129.0) = 129 is
    assert binarise_map(v, 0.5).tolist() == [1.0, 1.0]            # the first rule, v > 0.5, also keeps 128/255
    import cv2, numpy as np
    _, ref = cv2.threshold((v.numpy() * 255.0).astype(np.uint8).astype(np.float32)[None], 128, 255, cv2.THRESH_BINARY)
    assert (ref[0] / 255).tolist() == binarise_map(v).tolist()


def test_wavelet_blur_by_hand_on_a_ramp():
    # an 8 x 8 image whose columns are 0..7. The authors' level at radius 1: the 3x3 binomial kernel with replicated
    # borders keeps a linear ramp inside and gives (0 + 0 + 1) / 4 = 0.25 and (6 + 7 + 7 + 7) / 4 = 6.75 at the ends.
    from erase_core.sampling.fusion import wavelet_blur
    x = torch.arange(8.).repeat(8, 1)[None, None]
    b1 = [0.25, 1, 2, 3, 4, 5, 6, 6.75]
    assert torch.allclose(wavelet_blur(x, 1)[0, 0], torch.tensor(b1).repeat(8, 1))
    # radius 2: that blur, then a linear zoom to 4 samples at 0, 7/3, 14/3, 7 (0.25, 7/3, 14/3, 6.75) and back to 8
    # samples at k * 3/7: 0.25, 0.25 + (3/7)(25/12), 0.25 + (6/7)(25/12), 3, 4, 14/3 + (1/7)(25/12), 14/3 + (4/7)(25/12), 6.75
    r2 = [0.25, 0.25 + 3 / 7 * 25 / 12, 0.25 + 6 / 7 * 25 / 12, 3, 4, 14 / 3 + 1 / 7 * 25 / 12, 14 / 3 + 4 / 7 * 25 / 12, 6.75]
    assert torch.allclose(wavelet_blur(x, 2)[0, 0], torch.tensor(r2).repeat(8, 1), atol=1e-5)
    # the a trous level at radius 2 has its taps 2 apart: (0 + 0 + 2) / 4 = 0.5 at the first column, another filter
    at = [0.5, 1.25, 2, 3, 4, 5, 5.75, 6.5]
    assert torch.allclose(wavelet_blur(x, 2, 'atrous')[0, 0], torch.tensor(at).repeat(8, 1))


def test_wavelet_color_fix_keeps_detail_and_takes_colour_on_a_small_image():
    from erase_core.sampling.fusion import wavelet_color_fix, wavelet_decompose
    content = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    flat = torch.full((1, 3, 64, 64), 0.3)
    # a constant is its own low-pass at every level (64: no edge sample of SciPy's zoom), so fixing onto it adds 0.3 to the detail
    assert torch.allclose(wavelet_color_fix(content, flat), wavelet_decompose(content)[0] + 0.3, atol=1e-6)
    assert torch.allclose(wavelet_color_fix(flat, content), wavelet_decompose(content)[1], atol=1e-6)
    # the SciPy edge: halving 48 samples puts output 23 at 23 * (47/23), a rounding error past 47: SciPy fills 0
    from erase_core.sampling.fusion import scipy_zoom
    z = scipy_zoom(torch.ones(1, 1, 48, 48), (24, 24))[0, 0]
    assert torch.allclose(z[:23, :23], torch.ones(23, 23)) and z[23].eq(0).all() and z[:, 23].eq(0).all()


def test_fusion_defaults_are_the_authors():
    import inspect
    sig = inspect.signature(attention_fusion).parameters
    assert (sig['threshold'].default, sig['color_fix'].default, sig['wavelet'].default, sig['sizes'].default) == (None, True, 'reference', 'fixed')
    assert fusion_sizes(1024, 1024, sizes='fixed') == dict(dilate_size=21, blur_size=9, blur_sigma=2.0)   # fixed at any size
    assert fusion_sizes(1024, 1024)['dilate_size'] == 43                                                     # 'scaled': follows the image


def test_bad_fusion_options():
    g = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match='wavelet algorithm must be one of'):
        attention_fusion(g, g, torch.rand(1, 4, 4), wavelet='haar')
    with pytest.raises(InputError, match='sizes must be one of'):
        attention_fusion(g, g, torch.rand(1, 4, 4), sizes='auto')
