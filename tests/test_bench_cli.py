"""`erase-core bench`: its CSV and its errors."""
import numpy as np
import pandas as pd
from PIL import Image

from erase_core.cli import main


def test_bench_writes_a_csv_with_ratios_and_the_device(tmp_path, capsys):
    out = tmp_path / 'b.csv'
    assert main(['bench', '--preset', 'tiny', '--steps', '2', '--fractions', '0.2', '--repeats', '1', '--warmup', '0',
                 '--csv', str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.method) == ['none', 'fpac'] and (df.preset == 'tiny').all() and df.device.str.contains('thread').all()
    assert {'total_s', 'total_cpu_s', 'flops_T', 'speedup', 'flop_ratio', 'step_flop_saving', 'saving_efficiency'} <= set(df)
    assert df.flop_ratio.iloc[1] > 1 and df.scale.iloc[0] == 'smoke'
    assert 'device:' in capsys.readouterr().out


def test_bench_on_a_given_image_and_mask(tmp_path):
    img, m = tmp_path / 'i.png', tmp_path / 'm.png'
    Image.fromarray(np.full((32, 64, 3), 90, np.uint8)).save(img)
    mk = np.zeros((32, 64), np.uint8); mk[8:20, 10:30] = 255; Image.fromarray(mk).save(m)
    out = tmp_path / 'b.csv'
    assert main(['bench', '--preset', 'tiny', '--steps', '2', '--repeats', '1', '--warmup', '0', '--no-flops',
                 '--image', str(img), '--mask', str(m), '--csv', str(out)]) == 0
    df = pd.read_csv(out)
    assert (df['size'] == '64x32').all() and len(df) == 2 and abs(df.mask_fraction.iloc[1] - 240 / 2048) < 1e-6


def test_bench_bad_arguments(capsys):
    assert main(['bench', '--methods', 'none', 'warp']) == 2
    assert "unknown method(s) ['warp']" in capsys.readouterr().err
    assert main(['bench', '--size', '12y']) == 2
    assert '--size must be N or WxH' in capsys.readouterr().err
    assert main(['bench', '--fractions', '0', '0.5']) == 2
    assert '--fractions must lie in (0, 1]' in capsys.readouterr().err
    assert main(['bench', '--image', 'x.png']) == 2
    assert '--image and --mask go together' in capsys.readouterr().err


def test_bench_runs_the_baselines(tmp_path):
    out = tmp_path / 'b.csv'
    assert main(['bench', '--preset', 'tiny', '--steps', '4', '--repeats', '1', '--warmup', '0', '--fractions', '0.2',
                 '--methods', 'none', 'deepcache', 'toca', 'taylorseer', 'fewer-steps', '--csv', str(out)]) == 0
    df = pd.read_csv(out).set_index('method')
    assert list(df.index) == ['none', 'deepcache', 'toca', 'taylorseer', 'fewer-steps']
    assert (df.drop('none').flops_T < df.loc['none', 'flops_T']).all()       # each saves compute
    assert df.loc['toca', 'fg_token_fraction'] < 1


def test_bench_runs_the_options_beyond_the_paper(tmp_path):
    out = tmp_path / 'b.csv'
    # the toy architecture at 64 px (16x16 latents, no crop), a 5 % hole: the decoded box and the tiles are a part of the map
    assert main(['bench', '--preset', 'toy', '--steps', '4', '--repeats', '1', '--warmup', '0', '--fractions', '0.05',
                 '--methods', 'none', 'fpac', 'fpac-all', 'tiles', 'fpac-sparse', 'fast', '--csv', str(out)]) == 0
    df = pd.read_csv(out).set_index('method')
    assert list(df.index) == ['none', 'fpac', 'fpac-all', 'tiles', 'fpac-sparse', 'fast']
    f = df.flops_T
    assert f['tiles'] < f['none'] and f['fpac-all'] < f['fpac'] < f['none']   # decoding around the hole; more cached steps
    assert f['fpac-sparse'] < f['fpac'] and f['fast'] < min(f['fpac-all'], f['tiles'])   # sparse ResNets save; the options add up
    assert df.loc['fast', 'cached_steps'] == '1 2 3' and df.loc['fpac', 'cached_steps'] == '3'
