"""From a wheel, as a student installs it (not editable), with ERASE_CORE_CHECKPOINTS naming the committed checkpoints.

WHEEL INSTALL TEST. The package is built into a wheel (`pip wheel`, no dependencies) from a copy of the source, and
installed with pip into a scratch virtual environment under the system's temporary folder. Installing torch again
would take minutes and gigabytes, so the scratch environment reuses the packages of the environment running pytest
through one `.pth` line that appends that environment's site-packages to `sys.path`: its `.pth` files (among them the
editable install of this repository) are not processed, so `erase_core` can only come from the wheel, which the
script checks first. The script itself runs outside the repository, in a folder of its own, and it erases (command
line and API), trains every stage (YOEO's three, ObjectClear's base, a FlashClear student: every training loss), and
computes every metric (PSNR, PSNR-mask, LPIPS, LPIPS-Local, FID, MSN, MARS, CFD, FLOPs, latency) with the toy
metric networks, then checks the one-line answers of the commands that need a clone. About a minute on 2 cores."""
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(r'''
    import json, math, os, subprocess, sys, time
    from pathlib import Path
    import numpy as np, torch
    from PIL import Image
    t0 = time.time(); log = lambda s: print(f"[{time.time() - t0:5.1f} s] {s}", flush=True)
    import erase_core
    assert Path(erase_core.__file__).is_relative_to(Path(sys.prefix)), f"erase_core came from {erase_core.__file__}, not the wheel"
    assert not Path(erase_core.__file__).is_relative_to(Path(os.environ['REPO'])), erase_core.__file__
    log(f"erase_core from {erase_core.__file__}")
    exe = Path(sys.executable).parent / 'erase-core'
    cli = lambda *a, env=None: subprocess.run([str(exe), *map(str, a)], capture_output=True, text=True, env=env, timeout=600)

    # erase: the README's toy demo, from the command line, then the same through the API
    from erase_core.data.toyworld import make_toy_scenes
    from erase_core.data.masks import dilate_mask
    s = make_toy_scenes(1, seed=123_456_789, hole='effect')[0]
    Image.fromarray(s.image).save('scene.png'); Image.fromarray(dilate_mask(s.hole, 2).astype(np.uint8) * 255).save('scene_mask.png')
    r = cli('remove', 'scene.png', '--mask', 'scene_mask.png', '--model', 'toy:yoeo-joint', '--device', 'cpu', '-o', 'erased.png')
    assert r.returncode == 0 and r.stdout.strip() == 'wrote erased.png' and 'toy model' in r.stderr, r.stdout + r.stderr
    from erase_core.training.checkpoints import load_toy_eraser
    from erase_core.sampling.pipeline import ErasePipeline
    out, = ErasePipeline.from_recipe('yoeo', load_toy_eraser('yoeo-joint'))('scene.png', 'scene_mask.png', seed=0, paste_back=True)
    assert np.array_equal(np.asarray(out), np.asarray(Image.open('erased.png')))
    log('erased: command line and API agree')

    # without the variable, "not found" names it first
    env = {k: v for k, v in os.environ.items() if k != 'ERASE_CORE_CHECKPOINTS'}
    r = cli('remove', 'scene.png', '--mask', 'scene_mask.png', '--model', 'toy:yoeo-joint', '-o', 'x.png', env=env)
    assert r.returncode == 2 and 'ERASE_CORE_CHECKPOINTS' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    # the commands that need a clone say so in one line
    for cmd in (['reproduce', '--scale', 'smoke'], ['tour']):
        r = cli(*cmd)
        assert r.returncode == 2 and 'needs a clone' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    log('one-line answers: checkpoints not found, reproduce, tour')

    # train: every stage, so every training loss is computed; a toy run from the committed checkpoints
    from erase_core.cli import main
    from erase_core.training.trainer import read_losses, get_recipe
    assert get_recipe('yoeo-joint', 'toy').stage == 'joint'
    runs = Path('runs')
    def train(name, *a):
        assert main(['train', name, '--out', str(runs / name), '--quiet', '--set', 'steps=1', *map(str, a)]) == 0, name
        rows = read_losses(runs / name); assert rows and all(math.isfinite(v) for v in rows[-1].values()), rows
        return set(rows[-1]) - {'step', 'seconds'}
    losses = train('yoeo-teacher')
    t = runs / 'yoeo-teacher' / 'final' / 'unet.safetensors'
    losses |= train('yoeo-distill', '--teacher', t)
    d = runs / 'yoeo-distill' / 'final'
    losses |= train('yoeo-joint', '--teacher', t, '--student', d / 'unet.safetensors', '--disc', d / 'disc_head.safetensors')
    losses |= train('objectclear')
    losses |= train('flashclear', '--base', runs / 'objectclear' / 'final')
    need = {'mse', 'distill', 'dmd', 'gan', 'ss', 'efc', 'mask', 'diffusion', 'lpips', 'adversarial', 'disc'}
    assert need <= losses, need - losses
    assert main(['train', 'yoeo-teacher', '--scale', 'toy', '--out', 'toy-run', '--max-steps', '1', '--quiet', '--set', 'batch_size=2', '--set', 'n_scenes=16']) == 0
    assert (Path('toy-run') / 'final' / 'unet.safetensors').exists()          # a short run exports too
    log(f"trained: {len(losses)} loss terms finite, {sorted(losses)}")

    # every metric, with the toy metric networks (the committed toy segmenter)
    from erase_core.experiments.methods import metric_suite
    from erase_core.metrics.evaluate import evaluate, measure_latency
    from erase_core.metrics.compute import erasure_flops
    ms = metric_suite('toy')
    assert ms.status == 'ok', ms.status
    T = lambda a: torch.from_numpy(np.asarray(a)).permute(2, 0, 1).float() / 255
    ds = []
    for sc in make_toy_scenes(4, seed=123_000, hole='effect'):
        m = torch.from_numpy(sc.hole).float()[None]
        ds.append(dict(image=T(sc.image), mask=m, target=T(sc.clean), effect_mask=m, paired=True, id=str(sc.seed), entities=torch.from_numpy(sc.entities).long()))
    pipe = ErasePipeline.from_recipe('yoeo', load_toy_eraser('yoeo-joint'))
    outs = [pipe(x['image'], x['mask'], seed=0, paste_back=True, output_type='pt')[0] for x in ds]
    row = evaluate(outs, ds, scale='toy', lpips_metric=ms.lpips, fid_extractor=ms.fid, segmenter=ms.segmenter,
                   cfd_features=ms.cfd_features, mask_generator=ms.mask_generator)
    metrics = ['psnr', 'psnr_mask', 'lpips', 'lpips_local', 'fid', 'msn', 'mars', 'cfd']
    vals = {k: float(row[k][0]) for k in metrics}
    assert all(math.isfinite(v) for v in vals.values()), vals
    f = erasure_flops('toy', 64, 64, 2)
    lat = measure_latency(pipe, ds[0]['image'], ds[0]['mask'], warmup=1, runs=2)
    assert f['total_T'] > 0 and lat['median_s'] > 0
    log('metrics: ' + ', '.join(f"{k} {v:.3g}" for k, v in vals.items()) + f"; {f['total_T']:.4f} TFLOPs; {lat['median_s']:.3f} s")
    print('WHEEL CHECK PASSED')
''')


def _copy_source(dst: Path):
    "The files a wheel is built from, copied so that the build leaves nothing in the repository."
    dst.mkdir(parents=True)
    for f in ('setup.py', 'settings.ini', 'README.md', 'LICENSE', 'MANIFEST.in'):
        if (ROOT / f).exists(): shutil.copy2(ROOT / f, dst / f)
    shutil.copytree(ROOT / 'erase_core', dst / 'erase_core', ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


def test_a_wheel_install_erases_trains_and_measures(tmp_path):
    py = sys.executable
    clean = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PIP_TARGET', 'PIP_PREFIX', 'ERASE_CORE_DATA')}   # nothing else on sys.path
    try: import setuptools, wheel  # noqa: F401  (building without isolation needs them here)
    except ImportError: pytest.skip('setuptools and wheel are needed to build the wheel')
    _copy_source(tmp_path / 'src')
    b = subprocess.run([py, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '-q', '-w', str(tmp_path / 'dist'),
                        str(tmp_path / 'src')], capture_output=True, text=True, timeout=300, env=clean)
    assert b.returncode == 0, b.stdout[-2000:] + b.stderr[-2000:]
    whl, = (tmp_path / 'dist').glob('erase_core-*.whl')
    venv = tmp_path / 'venv'
    subprocess.run([py, '-m', 'venv', str(venv)], check=True, timeout=300, env=clean)
    vpy = venv / 'bin' / 'python'
    site = Path(subprocess.run([str(vpy), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                               capture_output=True, text=True, check=True, env=clean).stdout.strip())
    i = subprocess.run([str(vpy), '-m', 'pip', 'install', '--no-deps', '--no-index', '-q', str(whl)], capture_output=True, text=True, timeout=300, env=clean)
    assert i.returncode == 0, i.stdout[-2000:] + i.stderr[-2000:]
    assert (site / 'erase_core' / 'cli.py').exists() and (venv / 'bin' / 'erase-core').exists()
    # only now the shared packages (torch & co., not their .pth files): pip never saw, so never touched, the other environment
    (site / '_reuse_test_environment.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    work = tmp_path / 'outside'; work.mkdir()
    (work / 'check.py').write_text(SCRIPT)
    env = dict(clean)
    env.update(ERASE_CORE_CHECKPOINTS=str(ROOT / 'checkpoints'), REPO=str(ROOT), OMP_NUM_THREADS=env.get('OMP_NUM_THREADS', '1'),
               MPLBACKEND='Agg', HF_HUB_OFFLINE='1', PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    r = subprocess.run([str(vpy), 'check.py'], cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    print(r.stdout)
    assert r.returncode == 0 and 'WHEEL CHECK PASSED' in r.stdout, r.stdout[-3000:] + r.stderr[-4000:]
