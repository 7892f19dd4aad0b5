"""FlashClear's training recipes through the CLI at smoke scale: objectclear, flashclear and flashclear-2 run end to end,
the Table 2b ablation is a recorded switch, a RAD run resumes exactly, and a trained adapter in diffusers' LoRA format
loads back through `load_components(lora=...)` with the same outputs fused and unfused."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from erase_core.models.presets import LORA_WEIGHT_NAME, load_components
from erase_core.training.trainer import read_losses, latest_checkpoint
from training_helpers import smoke_run, train as _train


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    return smoke_run(tmp_path_factory, 'objectclear', 'fc')


def test_objectclear_runs_and_exports_unet_encoder_fusion(base):
    rows = read_losses(base)
    assert len(rows) == 4 and all({'mse', 'mask'} <= set(r) for r in rows)
    assert all(0 < r['mask'] < 2 for r in rows)                      # ObjectClear's balanced L1 lies in [0, 2]
    info = json.loads((base / 'final' / 'objectclear.json').read_text())
    assert info['preset'] == 'tiny' and info['token_index'] == 5
    for f in ('unet.safetensors', 'object_encoder.safetensors', 'object_fusion.safetensors'):
        assert (base / 'final' / f).stat().st_size > 0


@pytest.mark.parametrize('recipe,steps', [('flashclear', 4), ('flashclear-2', 2)])
def test_students_run_from_the_base_and_export_a_lora(base, tmp_path, recipe, steps):
    assert _train(recipe, '--scale', 'smoke', '--out', tmp_path / 's', '--base', base / 'final') == 0
    rows = read_losses(tmp_path / 's')
    assert len(rows) == 4 and {'diffusion', 'lpips', 'adversarial', 'mask', 'disc'} <= set(rows[0])
    info = json.loads((tmp_path / 's' / 'final' / 'flashclear.json').read_text())
    assert info['student_steps'] == steps and len(info['sampling']['timesteps']) == steps and info['variant'] == 'rad'
    assert info['base'] == str(base / 'final') and len(info['base_unet_sha256']) == 64
    sd = load_file(str(tmp_path / 's' / 'final' / LORA_WEIGHT_NAME))
    assert sd and all('lora' in k for k in sd)


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
@pytest.mark.parametrize('recipe', ['objectclear', 'flashclear'])
def test_a_smoke_step_runs_under_mixed_precision(base, tmp_path, recipe, precision):
    "The paper recipes train in bf16; the attention mask loss and the object token must not break under autocast."
    extra = ['--base', base / 'final'] if recipe == 'flashclear' else []
    import subprocess, sys                                           # a process of its own: accelerate's state is process-wide
    argv = ['train', recipe, '--scale', 'smoke', '--out', tmp_path / 'r', '--set', f'mixed_precision={precision}', '--max-steps', 1, '--quiet', *extra]
    r = subprocess.run([sys.executable, '-m', 'erase_core.cli', *map(str, argv)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = read_losses(tmp_path / 'r')
    assert len(rows) == 1 and all(torch.isfinite(torch.tensor(v)) for k, v in rows[0].items() if k != 'step')
    assert json.loads((tmp_path / 'r' / 'recipe.json').read_text())['mixed_precision'] == precision


@pytest.mark.parametrize('abl,terms,disc', [('I', {'diffusion', 'mask'}, False), ('II', {'diffusion', 'lpips', 'mask'}, False),
                                            ('III', {'diffusion', 'lpips', 'adversarial', 'mask'}, True)])
def test_the_ablation_is_a_switch_recorded_in_the_run(tmp_path, abl, terms, disc):
    assert _train('flashclear', '--scale', 'smoke', '--out', tmp_path / abl, '--set', f'ablation={abl}', '--set', 'steps=1') == 0
    row = read_losses(tmp_path / abl)[0]
    assert set(row) - {'step', 'seconds'} == terms | ({'disc'} if disc else set())
    assert json.loads((tmp_path / abl / 'recipe.json').read_text())['params']['ablation'] == abl
    assert json.loads((tmp_path / abl / 'final' / 'flashclear.json').read_text())['variant'] == ('gan' if disc else None)


def test_rad_resume_from_a_checkpoint_gives_the_uninterrupted_adapter(base, tmp_path):
    common = ['--scale', 'smoke', '--base', base / 'final']
    assert _train('flashclear', '--out', tmp_path / 'full', *common) == 0
    assert _train('flashclear', '--out', tmp_path / 'cut', '--max-steps', 2, *common) == 0
    assert latest_checkpoint(tmp_path / 'cut' / 'checkpoints').name == 'step-000002'
    assert json.loads((tmp_path / 'cut' / 'final.json').read_text())['finished'] is False      # a short run exports too
    assert _train('flashclear', '--out', tmp_path / 'cut', '--resume', *common) == 0
    a, b = (load_file(str(tmp_path / r / 'final' / LORA_WEIGHT_NAME)) for r in ('full', 'cut'))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = read_losses(tmp_path / 'full'), read_losses(tmp_path / 'cut')
    assert [dict(r, seconds=0) for r in la] == [dict(r, seconds=0) for r in lb]


def test_a_trained_adapter_loads_back_fused_and_unfused_with_the_same_outputs(base, tmp_path):
    assert _train('flashclear', '--scale', 'smoke', '--out', tmp_path / 's', '--base', base / 'final') == 0
    lora, w = tmp_path / 's' / 'final', base / 'final' / 'unet.safetensors'
    plain = load_components('tiny', 'random', unet_weights=w)
    fused = load_components('tiny', 'random', unet_weights=w, lora=lora, fuse=True)
    unfused = load_components('tiny', 'random', unet_weights=w, lora=lora, fuse=False)
    assert fused.lora_fused and not unfused.lora_fused and hasattr(unfused.unet, 'peft_config')
    g = torch.Generator().manual_seed(0)
    x, emb = torch.randn(2, 9, 16, 16, generator=g), torch.randn(2, 8, 32, generator=g)
    with torch.no_grad():
        outs = [c.unet(x, 499, encoder_hidden_states=emb).sample for c in (plain, fused, unfused)]
    assert torch.allclose(outs[1], outs[2], atol=1e-5)
    assert (outs[0] - outs[1]).abs().max() > 1e-4                      # the adapter changes the UNet
    # the same through the ObjectClear loader (base folder + adapter): the student erases identically fused and unfused
    from erase_core.training.flashclear import load_objectclear, objectclear_erase
    img, m = torch.rand(1, 3, 32, 32, generator=g), torch.zeros(1, 1, 32, 32); m[..., 8:20, 10:22] = 1
    a = objectclear_erase(load_objectclear(base / 'final', lora=lora, fuse=True), img, m, 'flashclear')
    b = objectclear_erase(load_objectclear(base / 'final', lora=lora, fuse=False), img, m, 'flashclear')
    assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize('args,first', [
    (['flashclear', '--scale', 'smoke', '--set', 'ablation=V'], "erase-core: error: ablation must be one of ['I', 'II', 'III', 'IV']"),
    (['objectclear', '--scale', 'paper'], 'erase-core: error: a paper-scale objectclear run needs --base'),
    (['flashclear', '--scale', 'paper', '--base', '.', '--data', '.'], 'erase-core: error: a paper-scale RAD run needs --lpips-weights'),
    (['flashclear', '--scale', 'smoke', '--set', 'disc_timestep="later"'], "erase-core: error: disc_timestep must be 'next' or 'same'"),
])
def test_bad_flashclear_input_is_one_line(tmp_path, capsys, args, first):
    assert _train(*args, '--out', tmp_path / 'x') == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(first), err


def test_paper_recipes_run_on_local_diffusers_clip_and_fusion_files(tmp_path):
    "The paper-scale code path on tiny stand-ins: a diffusers folder, a CLIP vision folder and a fusion weights file."
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    from erase_core.models.presets import save_components
    from erase_core.models.objectclear import build_object_fusion
    from erase_core.training.flashclear import toy_ober_parquet, _save
    save_components(load_components('tiny'), tmp_path / 'base')
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                                   image_size=30, patch_size=6, projection_dim=32)).save_pretrained(tmp_path / 'clip')
    _save(build_object_fusion('tiny', seed=3), tmp_path / 'fusion.safetensors')
    data = toy_ober_parquet(4, 32, root=tmp_path)
    small = ['--set', 'preset="tiny"', '--set', 'steps=1', '--set', 'batch_size=2', '--set', 'image_size=32', '--set', 'mixed_precision="no"']
    local = ['--scale', 'paper', '--base', tmp_path / 'base', '--image-encoder', tmp_path / 'clip', '--fusion', tmp_path / 'fusion.safetensors',
             '--data', data, *small]
    assert _train('objectclear', '--out', tmp_path / 'oc', *local) == 0
    fin = tmp_path / 'oc' / 'final'
    assert (fin / 'unet.safetensors').exists() and (fin / 'object_fusion.safetensors').exists()
    assert not (fin / 'object_encoder.safetensors').exists()           # CLIP stays frozen and external at paper scale
    assert load_file(str(fin / 'unet.safetensors'))['conv_in.weight'].dtype == torch.float32
    # the student of that base: the same local folders, the trained UNet as --init
    import torchvision
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / 'alexnet.pth')   # stands in for the ImageNet weights
    assert _train('flashclear', '--out', tmp_path / 'fc', *local, '--init', fin / 'unet.safetensors', '--set', 'lora_rank=4',
                  '--lpips-weights', tmp_path / 'alexnet.pth',
                  '--set', 'lora_alpha=4') == 0
    assert json.loads((tmp_path / 'fc' / 'final' / 'flashclear.json').read_text())['lora_rank'] == 4
