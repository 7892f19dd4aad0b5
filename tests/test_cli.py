"""The `erase-core` command: single image, folder (resumable), flops, and its errors."""
import subprocess
import sys

import numpy as np
from PIL import Image

from erase_core.cli import find_pairs, main


def _scene(d, name, with_mask=True, size=(40, 36)):
    rng = np.random.default_rng(len(name))
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(d / f'{name}.jpg')
    if with_mask:
        m = np.zeros((size[1], size[0]), np.uint8); m[5:15, 8:30] = 255
        Image.fromarray(m).save(d / f'{name}_mask.png')


SMOKE = ['--preset', 'tiny', '--random-weights']


def test_single_image(tmp_path):
    _scene(tmp_path, 'a')
    assert main(['remove', str(tmp_path / 'a.jpg'), '--mask', str(tmp_path / 'a_mask.png'), *SMOKE]) == 0
    out = Image.open(tmp_path / 'a_erased.png')
    assert out.size == (40, 36)
    a, b = np.asarray(out).astype(int), np.asarray(Image.open(tmp_path / 'a.jpg')).astype(int)
    m = np.asarray(Image.open(tmp_path / 'a_mask.png')) > 127
    assert (a[~m] == b[~m]).all()        # pasted back by default


def test_folder_is_resumable(tmp_path, capsys):
    src, out = tmp_path / 'in', tmp_path / 'out'
    src.mkdir()
    for n in 'abc': _scene(src, n)
    _scene(src, 'orphan', with_mask=False)
    pairs, orphans = find_pairs(src, None)
    assert [p[0].name for p in pairs] == ['a.jpg', 'b.jpg', 'c.jpg'] and [o.name for o in orphans] == ['orphan.jpg']
    assert main(['remove', str(src), '-o', str(out), *SMOKE]) == 0
    assert sorted(p.name for p in out.iterdir()) == ['a.png', 'b.png', 'c.png']
    (out / 'b.png').unlink()
    before = (out / 'a.png').stat().st_mtime_ns
    assert main(['remove', str(src), '-o', str(out), *SMOKE]) == 0
    assert (out / 'b.png').exists() and (out / 'a.png').stat().st_mtime_ns == before
    err = capsys.readouterr().err
    assert '2 output(s) exist already' in err and 'no mask for orphan.jpg' in err


def test_masks_folder(tmp_path):
    src, masks = tmp_path / 'img', tmp_path / 'masks'
    src.mkdir(); masks.mkdir()
    _scene(src, 'x')
    (src / 'x_mask.png').rename(masks / 'x.png')
    assert main(['remove', str(src), '--masks', str(masks), '-o', str(tmp_path / 'o'), *SMOKE]) == 0
    assert (tmp_path / 'o' / 'x.png').exists()


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    _scene(tmp_path, 'a')
    assert main(['remove', str(tmp_path / 'a.jpg'), '--mask', str(tmp_path / 'a_mask.png')]) == 2
    assert '--model DIR' in capsys.readouterr().err
    assert main(['remove', str(tmp_path / 'a.jpg'), *SMOKE]) == 2
    assert 'needs its mask' in capsys.readouterr().err
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / 'small.png')
    assert main(['remove', str(tmp_path / 'a.jpg'), '--mask', str(tmp_path / 'small.png'), *SMOKE]) == 2
    assert 'mask is 10x10' in capsys.readouterr().err
    assert main(['remove', str(tmp_path), *SMOKE]) == 2


def test_flops_command_runs_as_installed():
    from pathlib import Path
    exe = Path(sys.executable).parent / 'erase-core'
    r = subprocess.run([str(exe), 'flops', '--preset', 'tiny', '--height', '32', '--width', '32',
                        '--steps', '2'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'denoise_T' in r.stdout and 'unet_calls' in r.stdout


def test_toy_data_flows_through_the_real_readers(tmp_path):
    from erase_core.data.formats import read_coco_panoptic, read_ober_parquet
    assert main(['toy-data', str(tmp_path / 'coco'), '--format', 'coco', '--n', '4', '--seed', '3']) == 0
    panoptic = sorted((tmp_path / 'coco').rglob('*panoptic*.json'))
    assert panoptic and read_coco_panoptic(panoptic[0])
    assert main(['toy-data', str(tmp_path / 'toy.parquet'), '--format', 'ober', '--n', '5']) == 0
    assert len(read_ober_parquet(tmp_path / 'toy.parquet')) == 5


def test_tile_decoding_and_a_cache_from_the_command_line(tmp_path, capsys):
    "`--decode tiles` keeps the input far from the hole even without paste-back; `--cache` installs a bench method; a wrong one is one line."
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / 'a.png')
    m = np.zeros((64, 64), np.uint8); m[4:12, 4:12] = 255
    Image.fromarray(m).save(tmp_path / 'a_mask.png')
    run = lambda out, *extra: main(['remove', str(tmp_path / 'a.png'), '--mask', str(tmp_path / 'a_mask.png'), '-o', str(tmp_path / out),
                                    '--no-paste-back', '--no-crop', *SMOKE, *extra])
    assert run('full.png') == 0 and run('tiles.png', '--decode', 'tiles', '--decode-halo', '1', '--cache', 'fpac') == 0
    assert run('fast.png', '--cache', 'fpac-tiles') == 0                 # a combined bench method: FPAC from step 1 + tiles
    src = np.asarray(Image.open(tmp_path / 'a.png')).astype(int)
    full, tiles, fast = (np.asarray(Image.open(tmp_path / f)).astype(int) for f in ('full.png', 'tiles.png', 'fast.png'))
    far = np.s_[40:, 40:]                                   # far from the hole's box and its halo
    assert (tiles[far] == src[far]).all() and (fast[far] == src[far]).all() and (full[far] != src[far]).any()
    assert run('bad.png', '--cache', 'nope') != 0
    err = capsys.readouterr().err
    errors = [l for l in err.splitlines() if l.startswith('erase-core: error:')]
    assert len(errors) == 1 and "'nope'" in errors[0] and 'Traceback' not in err


def test_toy_vae_trains_the_recipe_it_names_into_its_own_place(monkeypatch, tmp_path):
    "`toy-vae` trains the toy preset's 16-channel recipe by default; the first (v1) goes to vae-v1, never over `vae`."
    import erase_core.models.toy_vae as TV
    from erase_core.cli import main
    calls = []
    def fake(out_dir=None, **kw):
        calls.append(dict(kw, out_dir=out_dir)); return None, dict(psnr_held_out=30.0, steps=kw.get('steps'), seconds=1.0, device='cpu')
    monkeypatch.setattr(TV, 'train_toy_vae', fake)
    published = []
    monkeypatch.setattr('erase_core.cli._publish_default', lambda name, out, *a, **k: published.append((name, out)))
    assert main(['toy-vae', '--steps', '3']) == 0 and main(['toy-vae', '--recipe', 'v1']) == 0
    assert main(['toy-vae', '--out', str(tmp_path / 'v'), '--thing-weight', '4', '--init', str(tmp_path)]) == 0
    v2, v1, ft = calls
    assert v2['config']['latent_channels'] == 16 and v2['world'] == 'v2' and v2['steps'] == 3 and v2['out_dir'].name == 'vae'
    assert 'config' not in v1 and v1['out_dir'].name == 'vae-v1' and v1['steps'] == 2000
    assert ft['thing_weight'] == 4 and ft['init'] == str(tmp_path) and str(ft['out_dir']) == str(tmp_path / 'v')
    assert [n for n, _ in published] == ['vae', 'vae-v1', 'vae']
