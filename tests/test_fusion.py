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
