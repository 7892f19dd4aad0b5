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


NO_MODEL = ['--model', '/nonexistent/model']        # a check that must come before the model loads fails on the input, not on this


def _model_folder(t, preset='tiny', name='model'):
    from erase_core.models.presets import load_components, save_components
    return save_components(load_components(preset, seed=1), t / name)


def _pickled_condition(t):
    import pickle
    root = _model_folder(t)

    class Planted:                                    # would run code if unpickled with weights_only=False
        def __reduce__(self): return (os.system, (f'touch {t}/pwned',))
    (root / 'condition.pt').write_bytes(pickle.dumps(Planted()))
    return str(root)


def _empty_unet(t):
    root = _model_folder(t)
    for w in (root / 'unet').glob('*.safetensors'): w.write_bytes((2).to_bytes(8, 'little') + b'{}')
    return str(root)


def _empty_safetensors(t, name='empty.safetensors'):
    (t / name).write_bytes((2).to_bytes(8, 'little') + b'{}')
    return str(t / name)


def _huge_png(t, name='huge.png'):
    Image.new('1', (20000, 10000)).save(t / name)     # 200 megapixels in a few kB
    return t / name


def _label_map(t, ids=(3, 5)):
    m = np.zeros((36, 40), np.uint8); m[5:15, 8:18] = ids[0]; m[5:15, 20:30] = ids[1]
    Image.fromarray(m).save(t / 'labels.png')
    return str(t / 'labels.png')


def _notebook(t, name, data):
    (t / name).write_bytes(data)
    return str(t / name)


def _recipe_run(t):
    "A one-step smoke run folder to resume."
    assert main(['train', 'yoeo-teacher', '--scale', 'smoke', '--out', str(t / 'run'), '--max-steps', '1', '--quiet']) == 0
    return str(t / 'run')


no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA GPU is present')
no_mps = pytest.mark.skipif(bool(getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available()), reason='MPS present')

ROUND2 = [
    # numbers out of range, through the command line
    ('seed-2-to-the-70', lambda t: ['remove', *_single(t), *SMOKE, '--seed', str(2**70)], 2, '--seed must lie in [0, 2**63 - 1]'),
    ('seed-negative', lambda t: ['remove', *_single(t), *SMOKE, '--seed', '-1'], 2, '--seed must lie in'),
    ('decode-halo-negative', lambda t: ['remove', *_single(t), *SMOKE, '--decode', 'tiles', '--decode-halo', '-3'], 2, '--decode-halo must be a whole number >= 0'),
    ('crop-margin-nan', lambda t: ['remove', *_single(t), *SMOKE, '--crop-margin', 'nan'], 2, '--crop-margin must be a finite number >= 0'),
    ('crop-margin-inf', lambda t: ['remove', *_single(t), *SMOKE, '--crop-margin', 'inf'], 2, '--crop-margin must be a finite number'),
    ('crop-margin-negative', lambda t: ['remove', *_single(t), *SMOKE, '--crop-margin', '-0.5'], 2, '--crop-margin must be a finite number >= 0'),
    ('bench-repeats-0', lambda t: ['bench', '--repeats', '0'], 2, '--repeats must be a whole number >= 1'),
    ('bench-warmup-negative', lambda t: ['bench', '--warmup', '-2'], 2, '--warmup must be a whole number >= 0'),
    ('bench-steps-0', lambda t: ['bench', '--steps', '0'], 2, '--steps must be a whole number >= 1'),
    ('reproduce-n-samples-negative', lambda t: ['reproduce', '--scale', 'smoke', '--n-samples', '-1'], 2, '--n-samples must be a whole number >= 1'),
    ('reproduce-n-samples-0', lambda t: ['reproduce', '--scale', 'smoke', '--n-samples', '0'], 2, '--n-samples must be'),
    ('reproduce-jobs-0', lambda t: ['reproduce', '--scale', 'smoke', '--jobs', '0'], 2, '--jobs must be'),
    # --set values of the wrong type or out of range
    ('set-steps-abc', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--set', 'steps=abc'], 2, "steps='abc' is not valid"),
    ('set-lr-negative', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--set', 'lr=-1'], 2, 'lr=-1 is not valid: expected a finite number > 0'),
    ('set-lr-nan', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--set', "lr=float('nan')"], 2, 'is not valid'),
    ('set-ckpt-every-0', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--set', 'ckpt_every=0'], 2, 'ckpt_every=0 is not valid'),
    ('set-seed-fraction', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--set', 'seed=1.5'], 2, 'seed must be a whole number'),
    ('set-seed-too-big', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--seed', str(2**64)], 2, 'seed must lie in'),
    ('set-mixed-precision-fp64', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--set', 'mixed_precision=fp64'], 2, "mixed_precision='fp64' is not valid"),
    ('set-batch-size-negative', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--set', 'batch_size=-4'], 2, 'batch_size=-4 is not valid'),
    ('set-ema-decay-2', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--set', 'ema_decay=2'], 2, 'ema_decay=2 is not valid'),
    ('train-max-steps-0', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--max-steps', '0'], 2, '--max-steps must be a whole number >= 1'),
    # devices
    ('train-device-junk', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--device', 'foo'], 2, 'not a device'),
    ('train-device-unsupported', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--device', 'meta'], 2, 'unsupported device type'),
    pytest.param('train-device-cuda', lambda t: ['train', 'yoeo-teacher', '--out', str(t / 'r'), '--device', 'cuda'], 2, 'no CUDA GPU',
                 marks=no_cuda, id='train-device-cuda'),
    ('bench-device-junk', lambda t: ['bench', '--device', 'gpu0'], 2, 'not a device'),
    pytest.param('bench-device-cuda', lambda t: ['bench', '--device', 'cuda'], 2, 'no CUDA GPU', marks=no_cuda, id='bench-device-cuda'),
    pytest.param('reproduce-device-cuda', lambda t: ['reproduce', '--scale', 'smoke', '--device', 'cuda:0'], 2, 'no CUDA GPU', marks=no_cuda,
                 id='reproduce-device-cuda'),
    ('reproduce-device-junk', lambda t: ['reproduce', '--scale', 'smoke', '--device', 'tpu'], 2, 'not a device'),
    # output places, reported before any work
    ('train-out-is-a-file', lambda t: ['train', 'yoeo-teacher', '--out', _under_a_file(t)], 2, 'is a file; name a folder'),
    ('train-out-under-a-file', lambda t: ['train', 'yoeo-teacher', '--out', _under_a_file(t, 'run')], 2, 'cannot write there'),
    ('bench-csv-under-a-file', lambda t: ['bench', '--csv', _under_a_file(t, 'b.csv')], 2, '--csv: '),
    ('bench-csv-is-a-folder', lambda t: ['bench', '--csv', str(t)], 2, 'is a folder; name a file'),
    ('reproduce-results-under-a-file', lambda t: ['reproduce', '--scale', 'smoke', '--results-root', _under_a_file(t, 'res')], 2, '--results-root: cannot create'),
    ('reproduce-data-root-is-a-file', lambda t: ['reproduce', '--scale', 'smoke', '--data-root', _under_a_file(t)], 2, 'is a file; name a folder'),
    ('reproduce-paths-missing', lambda t: ['reproduce', '--scale', 'paper', '--paths', str(t / 'none.json')], 2, '--paths file not found'),
    ('out-ico-would-shrink', lambda t: ['remove', *_single(t), *SMOKE, '-o', str(t / 'x.ico')], 2, 'would not keep the picture'),
    ('out-gif-would-cut-colours', lambda t: ['remove', *_single(t), *SMOKE, '-o', str(t / 'x.gif')], 2, 'would not keep the picture'),
    # self-masking
    ('mask-suffix-empty', lambda t: ['remove', *_folder(t), *SMOKE, '-o', str(t / 'out'), '--mask-suffix', ''], 2, 'every image would be its own mask'),
    ('masks-is-the-input-folder', lambda t: ['remove', *_folder(t), *SMOKE, '-o', str(t / 'out'), '--masks', str(t / 'in')], 2,
     'is the input folder: every image would be its own mask'),
    # inputs read before the model loads (the model named here does not exist)
    ('huge-png-before-the-model', lambda t: ['remove', str(_huge_png(t)), '--mask', str(_mask(t / 'm.png')), *NO_MODEL], 2, 'too large to read safely'),
    ('huge-mask-before-the-model', lambda t: ['remove', str(_photo(t / 'img.png')), '--mask', str(_huge_png(t, 'm.png')), *NO_MODEL], 2, 'too large to read safely'),
    ('mask-size-before-the-model', lambda t: ['remove', str(_photo(t / 'img.png')), '--mask', str(_mask(t / 'm.png', size=(10, 10))), *NO_MODEL], 2,
     'mask is 10x10'),
    ('label-map-of-two-objects', lambda t: ['remove', str(_photo(t / 'img.png')), '--mask', _label_map(t), *SMOKE], 2, 'looks like a label map of 2 objects'),
    # model folders and weights
    ('preset-contradicts-the-folder', lambda t: ['remove', *_single(t), '--model', str(_model_folder(t)), '--preset', 'toy'], 2, "holds a 'tiny' model"),
    ('pickled-condition-pt', lambda t: ['remove', *_single(t), '--model', _pickled_condition(t)], 2, 'not a plain tensor file'),
    ('unet-safetensors-without-tensors', lambda t: ['remove', *_single(t), '--model', _empty_unet(t)], 2, 'holds no tensors'),
    ('unet-weights-without-tensors', lambda t: ['remove', *_single(t), *SMOKE, '--unet-weights', _empty_safetensors(t)], 2, 'holds no tensors'),
    ('random-weights-and-model', lambda t: ['remove', *_single(t), '--random-weights', '--model', str(_model_folder(t))], 2, 'exclude each other'),
    ('random-weights-without-preset', lambda t: ['remove', *_single(t), '--random-weights'], 2, '--random-weights needs --preset'),
    ('toy-name-escapes', lambda t: ['remove', *_single(t), '--model', 'toy:../../etc'], 2, 'checkpoint name'),
    ('toy-name-unknown', lambda t: ['remove', *_single(t), '--model', 'toy:nothing-here'], 2, "toy checkpoint 'nothing-here'"),
    ('toy-with-another-preset', lambda t: ['remove', *_single(t), '--model', 'toy:yoeo-joint', '--preset', 'sd15-inpaint'], 2, "-preset model, not 'sd15-inpaint'"),
    ('toy-without-a-unet', lambda t: ['remove', *_single(t), '--model', 'toy:vae'], 2, 'has no unet.safetensors'),
    ('toy-checkpoint-folder-as-model', lambda t: ['remove', *_single(t), '--model', str(Path(__file__).resolve().parent.parent / 'checkpoints' / 'toy' / 'yoeo-joint')],
     2, '--model toy:yoeo-joint'),
    ('toy-objectclear-family', lambda t: ['remove', *_single(t), '--model', 'toy:flashclear'], 2, 'is an ObjectClear-family model'),
    ('toy-objectclear-base', lambda t: ['bench', '--model', 'toy:objectclear'], 2, 'is an ObjectClear-family model'),
    ('bench-toy-name-escapes', lambda t: ['bench', '--model', 'toy:a/b'], 2, 'checkpoint name'),
    ('train-teacher-toy-escapes', lambda t: ['train', 'yoeo-distill', '--out', str(t / 'r'), '--teacher', 'toy:../x'], 2, 'checkpoint name'),
    # --publish names that would escape checkpoints/toy/ (refused before the run)
    ('publish-escapes', lambda t: ['train', 'yoeo-teacher', '--scale', 'toy', '--out', str(t / 'r'), '--publish', '../../x'], 2, 'checkpoint name'),
    ('publish-absolute', lambda t: ['train', 'yoeo-teacher', '--scale', 'toy', '--out', str(t / 'r'), '--publish', '/tmp/x'], 2, 'checkpoint name'),
    # resuming under other settings
    ('resume-with-another-lr', lambda t: ['train', 'yoeo-teacher', '--out', _recipe_run(t), '--resume', '--set', 'lr=0.5'], 2, 'was started with other settings'),
    ('resume-with-another-seed', lambda t: ['train', 'yoeo-teacher', '--out', _recipe_run(t), '--resume', '--seed', '7'], 2, 'seed 0 -> 7'),
    ('resume-with-ema', lambda t: ['train', 'yoeo-teacher', '--out', _recipe_run(t), '--resume', '--set', 'ema_decay=0.9'], 2, 'ema_decay None -> 0.9'),
    # tour on things that are not notebooks
    ('tour-not-json', lambda t: ['tour', _notebook(t, 'x.ipynb', b'not json {')], 2, 'not JSON'),
    ('tour-empty-object', lambda t: ['tour', _notebook(t, 'x.ipynb', b'{}')], 2, "no 'cells' list"),
    ('tour-a-png', lambda t: ['tour', str(_photo(t / 'x.png'))], 2, 'is not a notebook (.ipynb)'),
    ('tour-binary-named-ipynb', lambda t: ['tour', _notebook(t, 'x.ipynb', b'\x89PNG\r\n\x1a\n\xff\xfe')], 2, 'not JSON'),
    ('tour-missing', lambda t: ['tour', str(t / 'none.ipynb')], 2, 'notebook not found'),
]

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
     2, 'not a readable safetensors file'),
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
     2, 'is a file, not a folder'),
    ('flops-csv-under-a-file-deeper', lambda t: ['flops', '--preset', 'tiny', '--csv', _under_a_file(t, 'sub', 'x.csv')], 2, '--csv: cannot create the folder'),
    ('flops-csv-is-folder', lambda t: ['flops', '--preset', 'tiny', '--csv', str(t)], 2, 'is a folder'),
] + ROUND2


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
    assert not (tmp_path / 'pwned').exists(), 'a planted pickle ran'


@pytest.mark.skipif(os.name != 'posix' or os.geteuid() == 0, reason='permissions do not bind root')
def test_read_only_folders(tmp_path, capsys):
    ro = tmp_path / 'ro'; ro.mkdir(); ro.chmod(0o555)
    try:
        assert main(['flops', '--preset', 'tiny', '--height', '32', '--width', '32', '--csv', str(ro / 'x.csv')]) == 2
        assert '--csv: cannot write in' in capsys.readouterr().err
        args = _single(tmp_path)
        assert main(['remove', *args, *SMOKE, '-o', str(ro / 'out.png')]) == 2
        assert '-o: cannot write in' in capsys.readouterr().err
        assert main(['train', 'yoeo-teacher', '--out', str(ro / 'run')]) == 2
        assert 'cannot write there' in capsys.readouterr().err
        assert main(['train', 'yoeo-teacher', '--out', str(ro)]) == 2
        assert 'cannot write there' in capsys.readouterr().err
        assert main(['bench', '--csv', str(ro / 'b.csv')]) == 2
        assert '--csv: cannot write in' in capsys.readouterr().err
        assert main(['reproduce', '--scale', 'toy', '--results-root', str(ro)]) == 2
        assert '--results-root: cannot write in' in capsys.readouterr().err
        assert list(ro.iterdir()) == []
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


@pytest.mark.parametrize('kind', ['red-on-black', 'zero-one-uint8', 'object-id-3', 'object-id-200-16-bit'])
def test_coloured_and_label_masks_erase(tmp_path, kind):
    _photo(tmp_path / 'img.png')
    if kind == 'red-on-black': _mask(tmp_path / 'm.png', mode='RGB-red')
    elif kind == 'object-id-3': _mask(tmp_path / 'm.png', value=3)                  # a label image: object 3 stored as 3
    elif kind == 'object-id-200-16-bit':
        m = np.zeros((36, 40), np.uint16); m[5:15, 8:30] = 200; Image.fromarray(m).save(tmp_path / 'm.png')
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


def _phone_jpeg(path, orientation=6, size=(40, 36)):
    "A photo stored landscape (W x H = size) with an EXIF orientation tag; returns the upright pixels a viewer shows."
    rng = np.random.default_rng(3)
    a = np.kron(rng.integers(0, 256, (size[1] // 4, size[0] // 4, 3)), np.ones((4, 4, 1))).astype(np.uint8)   # blocky: survives JPEG
    ex = Image.Exif(); ex[0x0112] = orientation
    Image.fromarray(a).save(path, exif=ex, quality=100)
    from PIL import ImageOps
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert('RGB'))


@pytest.mark.parametrize('resize', [False, True])
def test_exif_orientation_is_honoured(tmp_path, resize):
    upright = _phone_jpeg(tmp_path / 'phone.jpg')
    assert upright.shape[:2] == (40, 36)                                # displayed portrait, stored landscape
    w, h = (18, 20) if resize else (36, 40)
    m = np.zeros((h, w), np.uint8); m[: h // 4, : w // 3] = 255         # the top-left of the picture as displayed
    Image.fromarray(m).save(tmp_path / 'm.png')
    extra = ['--resize-mask'] if resize else []
    before = _hashes(tmp_path)
    assert main(['remove', str(tmp_path / 'phone.jpg'), '--mask', str(tmp_path / 'm.png'), *SMOKE, *extra]) == 0
    out = np.asarray(Image.open(tmp_path / 'phone_erased.png'))
    hole = np.zeros((40, 36), bool); hole[:10, :12] = True
    assert out.shape == upright.shape                                  # written upright, as displayed
    assert (out[~hole] == upright[~hole]).all() and (out[hole] != upright[hole]).any()
    assert {p: v for p, v in _hashes(tmp_path).items() if p in before} == before


def test_a_photo_named_like_a_mask_is_a_photo(tmp_path, capsys):
    (tmp_path / 'in').mkdir()
    _photo(tmp_path / 'in' / 'face_mask.png', seed=4)                   # no face.png beside it: a photo, not a mask
    _photo(tmp_path / 'in' / 'a.png'); _mask(tmp_path / 'in' / 'a_mask.png')
    assert main(['remove', str(tmp_path / 'in'), '-o', str(tmp_path / 'out'), *SMOKE]) == 0
    assert 'no mask for face_mask.png: skipped' in capsys.readouterr().err
    _mask(tmp_path / 'in' / 'face_mask_mask.png')
    assert main(['remove', str(tmp_path / 'in'), '-o', str(tmp_path / 'out'), *SMOKE]) == 0
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['a.png', 'face_mask.png']


def test_masks_folder_with_an_empty_suffix_pairs_images_with_their_masks_only(tmp_path):
    (tmp_path / 'in').mkdir(); (tmp_path / 'masks').mkdir()
    _photo(tmp_path / 'in' / 'a.png'); _mask(tmp_path / 'masks' / 'a.png')
    from erase_core.cli import find_pairs
    pairs, orphans = find_pairs(tmp_path / 'in', None, '')
    assert pairs == [] and [o.name for o in orphans] == ['a.png']      # never its own mask
    pairs, _ = find_pairs(tmp_path / 'in', tmp_path / 'masks', '')
    assert [(i.parent.name, m.parent.name) for i, m in pairs] == [('in', 'masks')]


def test_random_weights_warning_names_what_is_random(tmp_path, capsys):
    from erase_core.models.presets import load_components, save_components
    from safetensors.torch import save_file
    c = load_components('tiny', seed=9); save_components(c, tmp_path / 'm')
    save_file(c.unet.state_dict(), str(tmp_path / 'u.safetensors'))
    args = _single(tmp_path)
    assert main(['remove', *args, *SMOKE, '-o', str(tmp_path / 'a.png')]) == 0
    err = capsys.readouterr().err
    assert 'RANDOM UNet and autoencoder weights' in err
    assert main(['remove', *args, *SMOKE, '--unet-weights', str(tmp_path / 'u.safetensors'), '-o', str(tmp_path / 'b.png')]) == 0
    err = capsys.readouterr().err
    assert 'RANDOM autoencoder weights' in err and 'UNet' not in err.split('RANDOM')[1].split('weights')[0]
    assert main(['remove', *args, *SMOKE, '--unet-weights', str(tmp_path / 'u.safetensors'), '--vae', str(tmp_path / 'm' / 'vae'),
                 '-o', str(tmp_path / 'c.png')]) == 0
    assert 'RANDOM' not in capsys.readouterr().err                    # every part trained: no false warning
    assert main(['remove', *args, '--model', str(tmp_path / 'm'), '-o', str(tmp_path / 'd.png')]) == 0
    assert (np.asarray(Image.open(tmp_path / 'c.png')) == np.asarray(Image.open(tmp_path / 'd.png'))).all()


def test_the_folder_says_its_preset_and_success_says_wrote(tmp_path, capsys):
    from erase_core.models.presets import load_components, save_components
    save_components(load_components('tiny', seed=2), tmp_path / 'm')
    args = _single(tmp_path)
    assert main(['remove', *args, '--model', str(tmp_path / 'm')]) == 0   # no --preset: the folder's (tiny)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"wrote {tmp_path / 'img_erased.png'}"] and (tmp_path / 'img_erased.png').exists()


def test_a_toy_model_by_name_warns_that_it_is_a_toy(tmp_path, capsys):
    assert main(['remove', *_single(tmp_path), '--model', 'toy:yoeo-joint', '--device', 'cpu', '-o', str(tmp_path / 'o.png')]) == 0
    cap = capsys.readouterr()
    assert 'erase-core: warning: toy model: trained on 64-px procedural scenes' in cap.err and 'not an eraser for photos' in cap.err
    assert f"wrote {tmp_path / 'o.png'}" in cap.out


def test_relative_roots_are_resolved_against_the_callers_folder(tmp_path, monkeypatch):
    import erase_core.experiments.tables as T
    seen = {}
    monkeypatch.setattr(T, 'reproduce', lambda *a, **kw: seen.update(kw) or {'claims': dict(path='x')})
    monkeypatch.chdir(tmp_path)
    assert main(['reproduce', '--scale', 'smoke', '--results-root', 'res', '--data-root', 'sets']) == 0
    assert seen['results_root'] == str(tmp_path / 'res') and seen['data_root'] == str(tmp_path / 'sets')


def test_commands_that_need_a_clone_say_so_from_a_wheel(tmp_path, monkeypatch, capsys):
    import erase_core.core as C
    monkeypatch.setattr(C, 'PROJECT_ROOT', tmp_path / 'site-packages')        # what an installed wheel looks like
    for argv in (['reproduce', '--scale', 'smoke'], ['tour']):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and 'needs a clone of the erase_core repository' in err[0], err


# ---- the API under the command line ----

def test_api_rejects_seeds_and_margins_out_of_range():
    from erase_core.sampling.pipeline import ErasePipeline
    from erase_core.models.presets import load_components
    from erase_core.data.io import load_mask
    pipe = ErasePipeline(load_components('tiny'), 'lcm', 2)
    m = np.zeros((32, 32), bool); m[4:12, 4:12] = True
    for seed in (2**64, -1, 1.5):
        with pytest.raises(InputError, match='seed'): pipe(torch.rand(3, 32, 32), m, seed=seed)
    for margin in (float('nan'), -1, float('inf')):
        with pytest.raises(InputError, match='crop_margin'): pipe(torch.rand(3, 32, 32), m, crop_margin=margin)
        with pytest.raises(InputError, match='crop_margin'): ErasePipeline(load_components('tiny'), 'lcm', 2, crop_margin=margin)
    with pytest.raises(InputError, match='decode_halo'): ErasePipeline(load_components('tiny'), 'lcm', 2, decode_halo=-3)
    lab = np.zeros((8, 8), np.int64); lab[2:4, 2:6] = 3
    assert load_mask(lab).sum() == 8                                    # an int64 {0, 3} array: object 3
    lab[5, 5] = 7
    with pytest.raises(InputError, match='label map of 2 objects'): load_mask(lab)


# ---- the API under the command line (round 1) ----

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
