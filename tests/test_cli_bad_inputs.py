"""The command line (and the API under it) against a demanding user: every bad input is a one-line error with a
non-zero exit and leaves the inputs untouched; the inputs that used to give wrong results give the right ones."""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from erase_core.cli import main
from erase_core.core import InputError

SMOKE = ['--preset', 'tiny', '--random-weights']


def _photo(path, size=(40, 36), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _mask(path, size=(40, 36), value=255, full=False, mode='L'):
    m = np.full((size[1], size[0]), value, np.uint8) if full else np.zeros((size[1], size[0]), np.uint8)
    if not full: m[5:15, 8:30] = value
    if mode == 'RGB-red': Image.fromarray(np.stack([m, 0 * m, 0 * m], -1)).save(path)
    else: Image.fromarray(m).save(path)
    return path


def _single(t):
    _photo(t / 'img.png'); _mask(t / 'img_mask.png')
    return [str(t / 'img.png'), '--mask', str(t / 'img_mask.png')]


def _folder(t):
    (t / 'in').mkdir(); _photo(t / 'in' / 'a.png'); _mask(t / 'in' / 'a_mask.png')
    return [str(t / 'in')]


def _hashes(root: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob('*') if p.is_file()}


def _corrupt(t, name, data):
    (t / name).write_bytes(data)
    return str(t / name)


def _under_a_file(t, *parts):
    (t / 'plain_file').write_text('x')
    return str(t.joinpath('plain_file', *parts))


def _float_tiff(t, a):
    Image.fromarray(a.astype(np.float32)).save(t / 'img.tif')
    _mask(t / 'img_mask.png')
    return [str(t / 'img.tif'), '--mask', str(t / 'img_mask.png')]


def _dups(t):
    (t / 'in').mkdir()
    for n in ('dup.png', 'dup.jpg', 'dup_png.png'):
        _photo(t / 'in' / n)
    _mask(t / 'in' / 'dup_mask.png'); _mask(t / 'in' / 'dup_png_mask.png')
    return [str(t / 'in'), '-o', str(t / 'out')]


def _masks_folder(t):
    (t / 'in').mkdir(); (t / 'masks').mkdir()
    _photo(t / 'in' / 'a.png'); _mask(t / 'masks' / 'a.png')
    return [str(t / 'in'), '--masks', str(t / 'masks')]


no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA GPU is present')
no_mps = pytest.mark.skipif(bool(getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available()), reason='MPS present')

# (id, argv builder, expected exit code, a piece of the one-line error message)
CASES = [
    ('missing-input', lambda t: ['remove', str(t / 'nope.png'), '--mask', str(t / 'nope_mask.png'), *SMOKE], 2, 'input not found'),
    ('missing-mask', lambda t: ['remove', str(_photo(t / 'img.png')), '--mask', str(t / 'nope.png'), *SMOKE], 2, 'mask file not found'),
    ('no-mask-arg', lambda t: ['remove', str(_photo(t / 'img.png')), *SMOKE], 2, 'needs its mask: --mask'),
    ('no-model', lambda t: ['remove', *_single(t)], 2, '--model DIR'),
    ('steps-0', lambda t: ['remove', *_single(t), *SMOKE, '--steps', '0'], 2, '--steps must be a positive integer'),
    ('steps-negative', lambda t: ['remove', *_single(t), *SMOKE, '--steps', '-1'], 2, '--steps must be a positive integer'),
    ('steps-too-many-lcm', lambda t: ['remove', *_single(t), *SMOKE, '--steps', '1000'], 2, 'at most 50'),
    ('steps-too-many-ddim', lambda t: ['remove', *_single(t), *SMOKE, '--sampler', 'ddim', '--steps', '1001'], 2, 'at most 1000'),
    ('out-is-input', lambda t: ['remove', *_single(t), *SMOKE, '-o', str(t / 'img.png'), '--overwrite'], 2, 'would overwrite an input (an image)'),
    ('out-is-mask', lambda t: ['remove', *_single(t), *SMOKE, '-o', str(t / 'img_mask.png'), '--overwrite'], 2, 'would overwrite an input (the mask)'),
    ('out-is-input-folder', lambda t: ['remove', *_folder(t), *SMOKE, '-o', str(t / 'in'), '--overwrite'], 2, 'is the input folder'),
    ('out-is-mask-folder', lambda t: ['remove', *_masks_folder(t), *SMOKE, '-o', str(t / 'masks')], 2, 'is the mask folder'),
    ('out-unknown-suffix', lambda t: ['remove', *_single(t), *SMOKE, '-o', str(t / 'out.xyz')], 2, 'cannot tell an image format'),
    ('out-unwritable-single', lambda t: ['remove', *_single(t), *SMOKE, '-o', _under_a_file(t, 'out.png')], 2, 'is a file, not a folder'),
    ('out-unwritable-folder', lambda t: ['remove', *_folder(t), *SMOKE, '-o', _under_a_file(t, 'out')], 2, '-o: cannot create the folder'),
    ('corrupt-safetensors', lambda t: ['remove', *_single(t), *SMOKE, '--unet-weights', _corrupt(t, 'w.safetensors', b'\x00garbage' * 9)],
     2, 'cannot read it as a state dict'),
    ('corrupt-pt', lambda t: ['remove', *_single(t), *SMOKE, '--unet-weights', _corrupt(t, 'w.pt', b'not a pickle at all')],
     2, 'cannot read it as a state dict'),
    ('missing-unet-weights', lambda t: ['remove', *_single(t), *SMOKE, '--unet-weights', str(t / 'none.safetensors')], 2, '--unet-weights file not found'),
    pytest.param('device-cuda', lambda t: ['remove', *_single(t), *SMOKE, '--device', 'cuda'], 2, 'no CUDA GPU is available', marks=no_cuda, id='device-cuda'),
    pytest.param('device-mps', lambda t: ['remove', *_single(t), *SMOKE, '--device', 'mps'], 2, 'MPS backend is not available', marks=no_mps, id='device-mps'),
    ('device-junk', lambda t: ['remove', *_single(t), *SMOKE, '--device', 'gpu0'], 2, 'not a device'),
    ('full-mask', lambda t: ['remove', str(_photo(t / 'img.png')), '--mask', str(_mask(t / 'm.png', full=True)), *SMOKE], 2, '--allow-full-mask'),
    ('empty-folder', lambda t: ['remove', str((t / 'in').mkdir() or t / 'in'), '-o', str(t / 'out'), *SMOKE], 2, 'no images'),
    ('folder-without-masks', lambda t: ['remove', str((t / 'in').mkdir() or _photo(t / 'in' / 'a.png').parent), '-o', str(t / 'out'), *SMOKE],
     2, 'no image with a mask'),
    ('name-clash', lambda t: ['remove', *_dups(t), *SMOKE], 2, 'would both be written as dup_png.png'),
    ('nan-image', lambda t: ['remove', *_float_tiff(t, np.where(np.arange(40 * 36).reshape(36, 40) == 5, np.nan, 0.5)), *SMOKE], 2, 'NaN'),
    ('float-image-0-255', lambda t: ['remove', *_float_tiff(t, np.full((36, 40), 200.)), *SMOKE], 2, 'divide by 255'),
    ('mask-size', lambda t: ['remove', str(_photo(t / 'img.png')), '--mask', str(_mask(t / 'm.png', size=(10, 10))), *SMOKE], 2, 'mask is 10x10'),
    ('flops-height-without-preset', lambda t: ['flops', '--height', '64'], 2, '--height describe one erasure and need --preset'),
    ('flops-csv-unwritable', lambda t: ['flops', '--preset', 'tiny', '--height', '32', '--width', '32', '--csv', _under_a_file(t, 'x.csv')],
     2, '--csv: cannot create the folder'),
    ('flops-csv-is-folder', lambda t: ['flops', '--preset', 'tiny', '--csv', str(t)], 2, 'is a folder'),
]


CASES = [c if hasattr(c, 'marks') else pytest.param(*c, id=c[0]) for c in CASES]


@pytest.mark.parametrize('name,build,code,message', CASES)
def test_bad_input(tmp_path, capsys, name, build, code, message):
    argv = build(tmp_path)
    before = _hashes(tmp_path)
    assert main(argv) == code
    err = capsys.readouterr().err
    errors = [l for l in err.splitlines() if l.startswith('erase-core: error:')]
    assert len(errors) == 1, err
    assert message in errors[0], errors[0]
    assert 'Traceback' not in err
    after = _hashes(tmp_path)
    assert {p: h for p, h in after.items() if p in before} == before, "an input file changed or vanished"


@pytest.mark.skipif(os.name != 'posix' or os.geteuid() == 0, reason='permissions do not bind root')
def test_read_only_folders(tmp_path, capsys):
    ro = tmp_path / 'ro'; ro.mkdir(); ro.chmod(0o555)
    try:
        assert main(['flops', '--preset', 'tiny', '--height', '32', '--width', '32', '--csv', str(ro / 'x.csv')]) == 2
        assert '--csv: cannot write in' in capsys.readouterr().err
        args = _single(tmp_path)
        assert main(['remove', *args, *SMOKE, '-o', str(ro / 'out.png')]) == 2
        assert '-o: cannot write in' in capsys.readouterr().err
    finally: ro.chmod(0o755)


# ---- wrong results, now right ----

def _run_single(t, image, mask, *extra):
    assert main(['remove', str(image), '--mask', str(mask), *SMOKE, *extra]) == 0
    return t


def test_16_bit_png_is_scaled_by_65535(tmp_path):
    a = np.full((36, 40), 13107, np.uint16)                            # 20 % grey in 16 bits
    Image.fromarray(a).save(tmp_path / 'g16.png')
    assert Image.open(tmp_path / 'g16.png').mode == 'I;16'
    _mask(tmp_path / 'g16_mask.png')
    _run_single(tmp_path, tmp_path / 'g16.png', tmp_path / 'g16_mask.png')
    out = np.asarray(Image.open(tmp_path / 'g16_erased.png'))
    keep = np.asarray(Image.open(tmp_path / 'g16_mask.png')) == 0
    assert (out[keep] == 51).all()                                     # 0.2 * 255, not 255 (divided by its own max)


@pytest.mark.parametrize('kind', ['red-on-black', 'zero-one-uint8'])
def test_coloured_and_label_masks_erase(tmp_path, kind):
    _photo(tmp_path / 'img.png')
    if kind == 'red-on-black': _mask(tmp_path / 'm.png', mode='RGB-red')
    else: _mask(tmp_path / 'm.png', value=1)
    _run_single(tmp_path, tmp_path / 'img.png', tmp_path / 'm.png')
    a, b = np.asarray(Image.open(tmp_path / 'img_erased.png')), np.asarray(Image.open(tmp_path / 'img.png'))
    hole = np.zeros((36, 40), bool); hole[5:15, 8:30] = True
    assert (a[~hole] == b[~hole]).all() and (a[hole] != b[hole]).any()  # the hole was erased, the rest kept


def test_output_format_follows_the_suffix(tmp_path):
    args = _single(tmp_path)
    assert main(['remove', *args, *SMOKE, '-o', str(tmp_path / 'out.jpg')]) == 0
    assert (tmp_path / 'out.jpg').read_bytes()[:3] == b'\xff\xd8\xff'         # JPEG bytes
    assert Image.open(tmp_path / 'out.jpg').format == 'JPEG'
    assert not list(tmp_path.glob('.*part*'))                                # no temporary left behind


def test_output_into_an_existing_folder(tmp_path):
    args = _single(tmp_path); (tmp_path / 'outdir').mkdir()
    assert main(['remove', *args, *SMOKE, '-o', str(tmp_path / 'outdir')]) == 0
    assert [p.name for p in (tmp_path / 'outdir').iterdir()] == ['img_erased.png']
    assert main(['remove', *args, *SMOKE, '-o', str(tmp_path / 'newdir') + os.sep]) == 0
    assert (tmp_path / 'newdir' / 'img_erased.png').exists()


def test_same_name_different_extension_get_distinct_outputs(tmp_path):
    (tmp_path / 'in').mkdir()
    _photo(tmp_path / 'in' / 'dup.png', seed=1); _photo(tmp_path / 'in' / 'dup.jpg', seed=2); _mask(tmp_path / 'in' / 'dup_mask.png')
    assert main(['remove', str(tmp_path / 'in'), '-o', str(tmp_path / 'out'), *SMOKE]) == 0
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['dup_jpg.png', 'dup_png.png']


def test_mask_names_match_case_insensitively(tmp_path):
    (tmp_path / 'in').mkdir(); (tmp_path / 'masks').mkdir()
    _photo(tmp_path / 'in' / 'Photo.PNG'); _mask(tmp_path / 'in' / 'photo_MASK.png')
    _photo(tmp_path / 'in' / 'Other.png'); _mask(tmp_path / 'masks' / 'OTHER.PNG')
    assert main(['remove', str(tmp_path / 'in'), '-o', str(tmp_path / 'out'), *SMOKE]) == 0
    assert [p.name for p in (tmp_path / 'out').iterdir()] == ['Photo.png']
    assert main(['remove', str(tmp_path / 'in'), '--masks', str(tmp_path / 'masks'), '-o', str(tmp_path / 'out2'), *SMOKE]) == 0
    assert sorted(p.name for p in (tmp_path / 'out2').iterdir()) == ['Other.png', 'Photo.png']


def test_allow_full_mask_flag_exists_and_works(tmp_path):
    _photo(tmp_path / 'img.png'); _mask(tmp_path / 'm.png', full=True)
    _run_single(tmp_path, tmp_path / 'img.png', tmp_path / 'm.png', '--allow-full-mask')
    assert (tmp_path / 'img_erased.png').exists()


def test_large_image_warning_names_the_cost(tmp_path, capsys, monkeypatch):
    import erase_core.sampling.pipeline as P
    monkeypatch.setattr(P, 'LARGE_IMAGE_MP', 0.001)                     # a 40x36 image is "large" here: the path, not the size, is tested
    assert main(['remove', *_single(tmp_path), *SMOKE, '--no-crop']) == 0   # cropped to the mask (the default), nothing runs at full size
    warn = [l for l in capsys.readouterr().err.splitlines() if 'megapixels' in l]
    assert len(warn) == 1 and warn[0].startswith('erase-core: warning: image 0 is 40x36') and 'TFLOPs' in warn[0] and 'crop' in warn[0]
    msg = P.large_image_message(P.ErasePipeline(P.load_components('tiny'), 'lcm', 2), 3000, 4000, 2)
    assert '4000x3000 (12.0 megapixels)' in msg and 'x a 512x512 erasure' in msg
    ratio = float(msg.split('x a 512x512')[0].rsplit(' ', 1)[-1])
    assert ratio >= 3000 * 4000 / 512 ** 2 * 0.9                        # at least about the pixel ratio (46x)


def test_flops_size_is_width_by_height_and_options_apply(capsys):
    assert main(['flops', '--preset', 'tiny', '--height', '32', '--width', '96', '--steps', '1']) == 0
    out = capsys.readouterr().out
    rows = dict(l.split(None, 1) for l in out.splitlines() if l.strip())
    assert rows['height'].strip() == '32' and rows['width'].strip() == '96' and rows['padded'].strip() == '96x32'
    assert rows['steps'].strip() == '1'


# ---- the API under the command line ----

def test_api_rejects_nan_float_255_and_bad_steps():
    from erase_core.sampling.pipeline import ErasePipeline
    from erase_core.models.presets import load_components
    pipe = ErasePipeline(load_components('tiny'), 'lcm', 2)
    m = np.zeros((32, 32), bool); m[4:12, 4:12] = True
    with pytest.raises(InputError, match='NaN'): pipe(torch.full((3, 32, 32), float('nan')), m)
    with pytest.raises(InputError, match='NaN'): pipe(np.full((32, 32, 3), np.nan), m)
    with pytest.raises(InputError, match='divide by 255'): pipe(np.full((32, 32, 3), 120.), m)
    with pytest.raises(InputError, match='NaN'): pipe(torch.rand(3, 32, 32), torch.full((32, 32), float('nan')))
    for s in (0, -1, 51):
        with pytest.raises(InputError, match='steps'): pipe(torch.rand(3, 32, 32), m, steps=s)
    with pytest.raises(InputError, match='steps'): ErasePipeline(load_components('tiny'), 'lcm', 0)(torch.rand(3, 32, 32), m)


def test_api_empty_mask_returns_a_copy():
    from erase_core.sampling.pipeline import ErasePipeline
    from erase_core.models.presets import load_components
    x = torch.rand(3, 32, 32)
    out, = ErasePipeline(load_components('tiny'), 'lcm', 2)(x, torch.zeros(32, 32), output_type='pt')
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    out.zero_()
    assert x.abs().sum() > 0                                            # the caller's tensor is untouched


def test_api_masks_from_any_source():
    from erase_core.data.io import load_mask
    m = np.zeros((6, 6), np.uint8); m[1:3, 1:5] = 1
    assert load_mask(m).sum() == 8 and load_mask(torch.from_numpy(m)).sum() == 8 and load_mask(m.astype(np.int32)).sum() == 8
    red = np.zeros((6, 6, 3), np.uint8); red[1:3, 1:5, 0] = 255
    assert load_mask(red).sum() == 8
    with pytest.raises(InputError, match='NaN'): load_mask(np.full((6, 6), np.nan))
    with pytest.raises(InputError, match=r'\[0, 1\]'): load_mask(np.full((6, 6), 3.))
