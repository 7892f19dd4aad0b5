"""The evaluation side of the second toy world: the sets' contract (world, seeds, sizes, grounds), textured holes apart
from flat ones, the effect pixels, the judge, fusion labels, the discriminator check, and their bad input."""
import json, math

import numpy as np
import pandas as pd
import pytest
import torch

from erase_core.core import InputError, MissingFileError
from erase_core.experiments import claims as C
from erase_core.experiments import evalsets as E
from erase_core.experiments import methods as M
from erase_core.experiments import tables as T
from erase_core.metrics.evaluate import psnr_effect
from erase_core.training.rad import DISCRIMINATOR_CHANCE, discriminator_check, discriminator_log


def _one_line(e) -> str:
    msg = str(e.value)
    assert '\n' not in msg and msg
    return msg


def test_evalsets_are_drawn_from_the_second_world_with_new_eval_seeds():
    seeds = [v['seed'] for v in E.TOY_EVALSETS.values()]
    assert all(s >= E.EVAL_SEED_MIN for s in seeds) and len(set(seeds)) == len(seeds)
    assert not set(seeds) & set(E.RETIRED_EVAL_SEEDS)
    assert {k: v['n'] for k, v in E.TOY_EVALSETS.items()} == dict(coco_val2017=500, entityseg_test=1000, ober_test=256, rord_val=64)
    assert all(v['world'] == 'v2' for v in E.TOY_EVALSETS.values())
    assert 'capped' in E.TOY_EVALSETS['coco_val2017']['cap']            # the spec says why it has fewer than the power table asks


def test_scenes_json_names_every_scene_and_its_ground(tmp_path):
    out = E.build_evalset('ober_test', 'smoke', tmp_path)
    recs = json.loads((out / 'scenes.json').read_text())
    assert [r['id'] for r in recs] == [f'toy-900013-{i}' for i in range(4)]
    assert all(r['ground'] in E.GROUNDS for r in recs)
    ds = E.load_evalset('coco_val2017', 'smoke', root=tmp_path)
    g = E.sample_grounds('coco_val2017', ds, 'smoke', tmp_path)
    assert len(g) == len(ds) and set(g.values()) <= set(E.GROUNDS)


def test_unknown_ground_is_one_clear_line(tmp_path):
    with pytest.raises(InputError) as e: E.check_ground('grass')
    assert 'grass' in _one_line(e) and 'textured' in str(e.value)
    pd.DataFrame([dict(table='t', scale='toy', method='a', dataset='d', status='measured', psnr=1.0)]).to_csv(tmp_path / 't.csv', index=False)
    (tmp_path / 'per_image').mkdir()
    pd.DataFrame([dict(table='t', dataset='d', method='a', image='0', metric='psnr', value=1.0, scale='toy', extractor='')]).to_csv(
        tmp_path / 'per_image' / 't.csv', index=False)
    R = C.Results(tmp_path)
    with pytest.raises(InputError) as e: R.values('t', 'a', 'psnr', 'd', ground='Textured')
    _one_line(e)
    with pytest.raises(C.NotMeasured, match='no ground column'):           # a per-image file written before grounds
        R.values('t', 'a', 'psnr', 'd', ground='flat')
    assert len(R.values('t', 'a', 'psnr', 'd')) == 1


def test_psnr_effect_is_nan_without_effect_pixels_and_exact_with_them():
    out, tgt = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    obj = torch.zeros(1, 1, 8, 8); obj[..., 2:4, 2:4] = 1
    assert math.isnan(psnr_effect(out, tgt, obj, obj))                   # effect mask = object mask: no effect pixel
    eff = obj.clone(); eff[..., 4:6, 2:4] = 1
    out[..., 4:6, 2:4] = 0.1                                             # wrong by 0.1 on the effect pixels only
    assert psnr_effect(out, tgt, eff, obj) == pytest.approx(20.0, abs=1e-4)


def test_discriminator_check_contract_and_bad_input(tmp_path):
    assert DISCRIMINATOR_CHANCE == {'disc': pytest.approx(2 * math.log(2)), 'gan_d': 0.25}
    c = discriminator_check([0.25] * 80 + [0.2] * 20, 0.25)
    assert set(c) == {'chance', 'tail_mean', 'left'} and c['left'] and c['tail_mean'] == pytest.approx(0.2)
    assert not discriminator_check([0.2] * 80 + [0.24] * 20, 0.25)['left']   # 4 % below: at chance
    for bad in ([], [1.0, float('nan')]):
        with pytest.raises(InputError) as e: discriminator_check(bad, 0.25)
        _one_line(e)
    with pytest.raises(InputError): discriminator_check([1.0], 0)
    with pytest.raises(MissingFileError, match='losses.jsonl'): discriminator_log(tmp_path)
    (tmp_path / 'losses.jsonl').write_text('{"step": 1, "mse": 0.5}\n{"step": 2, "disc": 1.3}\n')
    assert discriminator_log(tmp_path) == ('disc', [1.3])


def test_every_runnable_method_names_its_post_processing():
    for name, spec in M.METHODS.items():
        label = M.method_spec(name)['label']
        if spec['kind'] == 'paper': assert '[' not in label, name; continue
        assert label.endswith(']'), name
    assert M.method_spec('yoeo')['label'].endswith('[pasted back outside the hole]')
    assert all(M.METHODS[m]['fusion'] for m in M.METHODS if M.METHODS[m].get('family') == 'flashclear')
    assert M.post_processing(dict(M.METHODS['objectclear+toca'])).startswith('no fusion')


def test_first_samples_refuses_an_empty_subset():
    with pytest.raises(InputError) as e: T.FirstSamples([1, 2, 3], 0)
    _one_line(e)
    assert len(T.FirstSamples([1, 2, 3], 2)) == 2 and len(T.FirstSamples([1, 2, 3], 9)) == 3 and T.TEACHER_SUBSET == 200
