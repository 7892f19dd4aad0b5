"""`erase-core remove --lora PATH`: the adapter is loaded, and a bad one is a message, not a traceback."""
import numpy as np
from PIL import Image

from erase_core.cli import main
from erase_core.models.presets import add_lora, build_unet, save_lora

SMOKE = ['--preset', 'tiny', '--random-weights']


def _pair(d):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / 'a.png')
    m = np.zeros((32, 32), np.uint8); m[8:20, 8:20] = 255
    Image.fromarray(m).save(d / 'a_mask.png')
    return str(d / 'a.png'), str(d / 'a_mask.png')


def test_remove_with_lora(tmp_path, capsys):
    img, mask = _pair(tmp_path)
    save_lora(add_lora(build_unet('tiny'), rank=2, init_lora_weights=False), tmp_path / 'lora')
    assert main(['remove', img, '--mask', mask, '-o', str(tmp_path / 'plain.png'), *SMOKE]) == 0
    assert main(['remove', img, '--mask', mask, '-o', str(tmp_path / 'lora.png'), '--lora', str(tmp_path / 'lora'), *SMOKE]) == 0
    a, b = (np.asarray(Image.open(tmp_path / f'{n}.png')).astype(int) for n in ('plain', 'lora'))
    assert a.shape == b.shape and (a != b).any()                     # the adapter changed the hole
    save_lora(add_lora(build_unet('toy'), rank=2), tmp_path / 'toy_lora')
    assert main(['remove', img, '--mask', mask, '-o', str(tmp_path / 'x.png'), '--lora', str(tmp_path / 'toy_lora'), *SMOKE]) == 2
    assert 'does not fit this UNet' in capsys.readouterr().err
    assert main(['remove', img, '--mask', mask, '-o', str(tmp_path / 'x.png'), '--lora', str(tmp_path / 'missing'), *SMOKE]) == 2
    assert 'LoRA not found' in capsys.readouterr().err
