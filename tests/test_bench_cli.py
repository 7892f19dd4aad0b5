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
