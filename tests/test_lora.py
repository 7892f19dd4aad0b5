"""LoRA adapters: the saved layout, and clear errors for missing, corrupt and mismatched files."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from erase_core.core import InputError, MissingFileError, ModelLoadError
from erase_core.models.presets import LORA_WEIGHT_NAME, add_lora, build_unet, load_components, load_lora, save_lora


@pytest.fixture
def lora_dir(tmp_path):
    d = tmp_path / 'lora'
    save_lora(add_lora(build_unet('tiny', seed=1), rank=2, alpha=3, init_lora_weights=False), d)
    return d


def test_saved_layout_is_diffusers_pipeline_format(lora_dir):
    with safe_open(str(lora_dir / LORA_WEIGHT_NAME), framework='pt') as f:
        keys, meta = list(f.keys()), f.metadata()
    assert keys and all(k.startswith('unet.') and ('.lora_A.' in k or '.lora_B.' in k) for k in keys)
    cfg = json.loads(meta['lora_adapter_metadata'])
    assert cfg['unet.r'] == 2 and cfg['unet.lora_alpha'] == 3


def test_bare_layout_from_save_lora_adapter(tmp_path):
    u = add_lora(build_unet('tiny', seed=1), rank=2, alpha=3, init_lora_weights=False).eval()
    u.save_lora_adapter(tmp_path / 'bare')                         # keys without the 'unet.' prefix
    x, c = torch.randn(1, 9, 16, 16), torch.randn(1, 8, 32)
    v = load_lora(build_unet('tiny', seed=1).eval(), tmp_path / 'bare', fuse=False)
    with torch.no_grad():
        assert (u(x, 3, encoder_hidden_states=c).sample - v(x, 3, encoder_hidden_states=c).sample).abs().max() < 1e-6


def test_errors(tmp_path, lora_dir):
    unet = build_unet('tiny')
    with pytest.raises(MissingFileError, match='LoRA not found'):
        load_lora(unet, tmp_path / 'nope')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ModelLoadError, match=f'expected {LORA_WEIGHT_NAME}'):
        load_lora(unet, tmp_path / 'empty')
    (tmp_path / 'corrupt.safetensors').write_bytes(b'\x00' * 20)
    with pytest.raises(ModelLoadError, match='not a readable safetensors LoRA'):
        load_lora(unet, tmp_path / 'corrupt.safetensors')
    save_file(build_unet('tiny').state_dict(), str(tmp_path / 'full.safetensors'))
    with pytest.raises(ModelLoadError, match='holds no LoRA weights'):
        load_lora(unet, tmp_path / 'full.safetensors')
    with pytest.raises(ModelLoadError, match='does not fit this UNet'):
        load_lora(build_unet('toy'), lora_dir)
    load_lora(unet, lora_dir, fuse=False)
    with pytest.raises(InputError, match='already has an adapter'):
        load_lora(unet, lora_dir, fuse=False)
    with pytest.raises(InputError, match='meta device'):
        load_components('tiny', 'meta', lora=lora_dir)
    with pytest.raises(InputError, match='no LoRA adapter'):
        save_lora(build_unet('tiny'), tmp_path / 'x')


def test_scale_and_fused_components(lora_dir):
    x, c = torch.randn(1, 9, 16, 16), torch.randn(1, 8, 32)
    base = load_components('tiny', seed=1)
    half_f = load_components('tiny', seed=1, lora=lora_dir, lora_scale=0.5)
    half_u = load_components('tiny', seed=1, lora=lora_dir, fuse=False, lora_scale=0.5)
    full = load_components('tiny', seed=1, lora=lora_dir)
    with torch.no_grad():
        yb, yf, yu, y1 = (m.unet(x, 3, encoder_hidden_states=c).sample for m in (base, half_f, half_u, full))
    assert (yf - yu).abs().max() < 1e-5                             # the scale means the same fused and unfused
    assert (yf - yb).abs().max() > 1e-3 and (yf - y1).abs().max() > 1e-3
