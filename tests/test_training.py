"""The training layer's contracts, run through the CLI at smoke scale: resume is exact, a NaN stops the run cleanly,
two processes give the losses of one, every YOEO stage runs end to end, bad input fails in one line."""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from erase_core.training.trainer import read_losses, latest_checkpoint
from training_helpers import smoke_run, train as _train

ROOT = Path(__file__).resolve().parent.parent
V = Path(sys.executable).parent


def _weights(run):
    return load_file(str(Path(run) / 'final' / 'unet.safetensors'))


@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
    return smoke_run(tmp_path_factory, 'yoeo-teacher', 'runs')


def test_every_yoeo_stage_runs_at_smoke_scale(teacher, tmp_path):
    w = teacher / 'final' / 'unet.safetensors'
    assert _train('yoeo-distill', '--scale', 'smoke', '--out', tmp_path / 'd', '--teacher', w) == 0
    d = tmp_path / 'd' / 'final'
    assert _train('yoeo-joint', '--scale', 'smoke', '--out', tmp_path / 'j', '--teacher', w, '--student', d / 'unet.safetensors',
                  '--disc', d / 'disc_head.safetensors') == 0
    rows = read_losses(tmp_path / 'j')
    assert len(rows) == 2 and {'distill', 'dmd', 'gan', 'ss', 'efc', 'gan_d'} <= set(rows[0])
    run = json.loads((tmp_path / 'j' / 'run.json').read_text())['sessions'][0]
    assert run['seed'] == 0 and run['versions']['torch'] and run['commit']
    assert json.loads((tmp_path / 'j' / 'recipe.json').read_text())['params']['loss_scale'] == 0.5
    # the student moved away from the teacher it started from
    s, t = _weights(tmp_path / 'd'), load_file(str(w))
    assert any(not torch.equal(s[k], t[k]) for k in s)


@pytest.mark.parametrize('recipe,steps,every', [('yoeo-teacher', 6, 3), ('yoeo-distill', 4, 2)])
def test_resume_from_a_checkpoint_gives_the_uninterrupted_weights(teacher, tmp_path, recipe, steps, every):
    extra = [] if recipe == 'yoeo-teacher' else ['--teacher', teacher / 'final' / 'unet.safetensors']
    assert _train(recipe, '--scale', 'smoke', '--out', tmp_path / 'full', *extra) == 0
    assert _train(recipe, '--scale', 'smoke', '--out', tmp_path / 'cut', '--max-steps', every, *extra) == 0
    assert latest_checkpoint(tmp_path / 'cut' / 'checkpoints').name == f'step-{every:06d}'
    assert (tmp_path / 'cut' / 'final' / 'unet.safetensors').exists()           # a short run can be loaded
    assert json.loads((tmp_path / 'cut' / 'final.json').read_text()) == dict(step=every, steps=steps, finished=False)
    assert _train(recipe, '--scale', 'smoke', '--out', tmp_path / 'cut', '--resume', *extra) == 0
    a, b = _weights(tmp_path / 'full'), _weights(tmp_path / 'cut')
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_losses(tmp_path / 'full') == [dict(r, seconds=f['seconds']) for r, f in zip(read_losses(tmp_path / 'cut'), read_losses(tmp_path / 'full'))]


def test_a_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, capsys):
    out = tmp_path / 'nan'
    rc = _train('yoeo-teacher', '--scale', 'smoke', '--out', out, '--set', 'ckpt_every=1', '--set', 'lr=1e30', '--set', 'weight_decay=0')
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("erase-core: error: step 2: loss 'mse' (of 'unet') is") and 'not finite' in err[0]
    last = latest_checkpoint(out / 'checkpoints')
    assert last.name == 'step-000001' and not (out / 'final').exists()
    assert [r['step'] for r in read_losses(out)] == [1]


def test_two_processes_match_one(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    one = subprocess.run([V / 'erase-core', 'train', 'yoeo-teacher', '--scale', 'smoke', '--out', tmp_path / 'one', '--quiet', '--device', 'cpu'],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    # accelerate's `--cpu` flag launches several CPU processes through MPI only; `--multi_gpu` uses torchrun, which
    # runs gloo on CPU when no GPU is there (our `--device cpu` makes sure of it).
    two = subprocess.run([V / 'accelerate', 'launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no',
                          '--dynamo_backend', 'no', '-m', 'erase_core.cli', 'train', 'yoeo-teacher', '--scale', 'smoke',
                          '--out', tmp_path / 'two', '--quiet', '--device', 'cpu'], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert json.loads((tmp_path / 'two' / 'run.json').read_text())['sessions'][0]['processes'] == 2
    l1, l2 = read_losses(tmp_path / 'one'), read_losses(tmp_path / 'two')
    assert len(l1) == len(l2) == 6
    for a, b in zip(l1, l2): assert b['mse'] == pytest.approx(a['mse'], rel=1e-5, abs=1e-6)
    w1, w2 = _weights(tmp_path / 'one'), _weights(tmp_path / 'two')
    assert max((w1[k].float() - w2[k].float()).abs().max().item() for k in w1) < 1e-3   # fp16 export of nearly equal fp32 weights


@pytest.mark.parametrize('args,first', [
    (['yoeo-nothing', '--scale', 'smoke'], "erase-core: error: unknown recipe 'yoeo-nothing'"),
    (['yoeo-teacher', '--scale', 'paper'], 'erase-core: error: a paper-scale run needs --base'),
    (['yoeo-teacher', '--scale', 'smoke', '--set', 'nonsense=1'], "erase-core: error: recipe 'yoeo-teacher' has no setting 'nonsense'"),
    (['yoeo-teacher', '--scale', 'smoke', '--set', 'steps'], 'erase-core: error: --set takes KEY=VALUE'),
    (['yoeo-teacher', '--scale', 'smoke', '--publish', 'x'], 'erase-core: error: --publish records toy checkpoints only'),
    (['yoeo-distill', '--scale', 'smoke', '--set', 'disc_head="patchgan"'], "erase-core: error: disc_head must be one of ('reference', 'linear')"),
    (['yoeo-distill', '--scale', 'smoke', '--set', 'disc_sample="later"'], "erase-core: error: disc_sample must be one of ('fresh', 'reuse')"),
    (['yoeo-joint', '--scale', 'smoke', '--set', 'exclude_teacher_sundries="paired"'], 'erase-core: error: exclude_teacher_sundries must be one of'),
])
def test_bad_training_input_is_one_line(tmp_path, capsys, args, first):
    assert _train(*args, '--out', tmp_path / 'x') == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(first), err


def test_a_second_run_into_a_used_folder_is_refused(teacher, capsys):
    assert _train('yoeo-teacher', '--scale', 'smoke', '--out', teacher) == 2
    assert 'pass --resume' in capsys.readouterr().err


def test_paper_recipe_loads_a_local_sd15_layout_folder(tmp_path):
    "Paper-scale code path on a tiny random folder in diffusers' layout (the real one is SD-1.5 inpainting)."
    from erase_core.models.presets import load_components, save_components
    from erase_core.training.trainer import get_recipe
    from erase_core.training.yoeo import stage_components
    save_components(load_components('tiny'), tmp_path / 'base')
    r = get_recipe('yoeo-teacher', 'paper', preset='tiny')
    c = stage_components(r, base=tmp_path / 'base')
    assert c.source == str(tmp_path / 'base') and c.unet.config.in_channels == 9
    rc = _train('yoeo-teacher', '--scale', 'paper', '--base', tmp_path / 'base', '--out', tmp_path / 'p', '--set', 'preset="tiny"',
                '--set', 'steps=1', '--set', 'batch_size=2', '--set', 'grad_accum=1', '--set', 'image_size=32', '--set', 'mixed_precision="no"',
                '--data', ROOT / 'data' / 'fixtures' / 'folder' / 'gt')
    assert rc == 0 and (tmp_path / 'p' / 'final' / 'unet.safetensors').exists()


def test_table2_ablations_are_switches_of_one_recipe(teacher, tmp_path):
    "YOEO's Table 2 rows are `yoeo-joint` with --no-ss / --no-efc / --no-d2; the run folder records which."
    w = teacher / 'final' / 'unet.safetensors'
    assert _train('yoeo-distill', '--scale', 'smoke', '--out', tmp_path / 'd', '--teacher', w) == 0
    d = tmp_path / 'd' / 'final'
    src = ['--teacher', w, '--student', d / 'unet.safetensors', '--disc', d / 'disc_head.safetensors']
    assert _train('yoeo-joint', '--scale', 'smoke', '--out', tmp_path / 'ss', '--no-d2', '--no-efc', *src, '--set', 'steps=1') == 0
    p = json.loads((tmp_path / 'ss' / 'recipe.json').read_text())['params']
    assert (p['ss'], p['efc'], p['d2'], p['ss_on_paired']) == (True, False, False, True)   # SS on D1 alone acts on paired samples
    rows = read_losses(tmp_path / 'ss')
    assert rows[0]['efc'] == 0 and 'sundries' in rows[0]


def test_a_stage2_head_of_another_architecture_names_the_retrain_command(teacher, tmp_path, capsys):
    "A stage-2 discriminator saved with the earlier `linear` head does not load into the recipe's reference head."
    w = teacher / 'final' / 'unet.safetensors'
    assert _train('yoeo-distill', '--scale', 'smoke', '--out', tmp_path / 'd', '--teacher', w, '--set', 'disc_head="linear"', '--set', 'steps=1') == 0
    d = tmp_path / 'd' / 'final'
    src = ['--teacher', w, '--student', d / 'unet.safetensors', '--disc', d / 'disc_head.safetensors', '--set', 'steps=1']
    capsys.readouterr()
    assert _train('yoeo-joint', '--scale', 'smoke', '--out', tmp_path / 'j', *src) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a 'linear' discriminator head" in err[0] and '`erase-core train yoeo-distill --scale smoke' in err[0]
    assert _train('yoeo-joint', '--scale', 'smoke', '--out', tmp_path / 'j2', *src, '--set', 'disc_head="linear"') == 0


def test_resume_with_ema_unpickles_nothing(tmp_path):
    "EMA state is written as safetensors; a pickle planted where accelerate keeps custom objects is never opened."
    ema = ['--set', 'ema_decay=0.9']
    assert _train('yoeo-teacher', '--scale', 'smoke', '--out', tmp_path / 'full', *ema) == 0
    assert _train('yoeo-teacher', '--scale', 'smoke', '--out', tmp_path / 'cut', '--max-steps', 3, *ema) == 0
    last = latest_checkpoint(tmp_path / 'cut' / 'checkpoints')
    assert (last / 'ema.safetensors').exists() and not list(last.glob('custom_checkpoint_*'))
    import pickle

    class Planted:
        def __reduce__(self): return (os.system, (f"touch {tmp_path / 'pwned'}",))
    planted = [last / n for n in ('custom_checkpoint_0.pkl', 'custom_checkpoint_1.pkl')]
    for f in planted: f.write_bytes(pickle.dumps(Planted()))
    assert _train('yoeo-teacher', '--scale', 'smoke', '--out', tmp_path / 'cut', '--resume', *ema) == 2   # refused, unopened
    assert not (tmp_path / 'pwned').exists()
    for f in planted: f.unlink()
    assert _train('yoeo-teacher', '--scale', 'smoke', '--out', tmp_path / 'cut', '--resume', *ema) == 0
    a, b = _weights(tmp_path / 'full'), _weights(tmp_path / 'cut')
    assert all(torch.equal(a[k], b[k]) for k in a)                     # the EMA weights of the uninterrupted run


def test_resume_with_other_settings_is_refused_and_recipe_json_kept(tmp_path, capsys):
    out = tmp_path / 'r'
    assert _train('yoeo-teacher', '--scale', 'smoke', '--out', out, '--max-steps', 2) == 0
    before = (out / 'recipe.json').read_bytes()
    for extra in (['--set', 'lr=0.5'], ['--set', 'batch_size=6'], ['--seed', '3']):
        assert _train('yoeo-teacher', '--scale', 'smoke', '--out', out, '--resume', *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and 'was started with other settings' in err[0], err
    assert (out / 'recipe.json').read_bytes() == before
    assert _train('yoeo-teacher', '--scale', 'smoke', '--out', out, '--resume', '--set', 'steps=8') == 0   # training longer is fine


def test_get_recipe_before_the_recipe_modules_are_imported():
    r = subprocess.run([sys.executable, '-c', "from erase_core.training.trainer import get_recipe; print(get_recipe('yoeo-teacher', 'toy').name, "
                        "get_recipe('flashclear', 'smoke').name)"], capture_output=True, text=True, timeout=300)
    assert r.stdout.split() == ['yoeo-teacher', 'flashclear'], r.stderr[-1000:]


def test_toy_names_resolve_for_train_paths():
    from erase_core.cli import build_parser, _train_paths
    from erase_core.training.checkpoints import toy_checkpoint
    a = build_parser().parse_args(['train', 'yoeo-joint', '--out', 'x', '--teacher', 'toy:yoeo-teacher', '--student', 'toy:yoeo-distill',
                                   '--disc', 'toy:yoeo-distill', '--vae', 'toy:vae', '--segmenter', 'toy:segmenter'])
    p = _train_paths(a)
    assert p['teacher'] == toy_checkpoint('yoeo-teacher') / 'unet.safetensors' and p['disc'].name == 'disc_head.safetensors'
    assert p['vae'] == toy_checkpoint('vae') and p['segmenter'] == toy_checkpoint('segmenter')
