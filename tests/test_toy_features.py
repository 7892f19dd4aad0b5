"""The toy feature network: the committed one ranks degradations as a perceptual metric must; bad input is refused."""
import numpy as np
import pytest
import torch

from erase_core.core import InputError, MissingFileError
from erase_core.data.toyworld import make_toy_scenes, toy_world
from erase_core.models.toy_features import (DAMAGE_KINDS, FEATURE_HELD_OUT_SEED, ToyFeatureNet, ToyLPIPS, ToyPatchFeatures,
                                            degrade, hole_fills, load_toy_features, lpips_ranking, toy_fid_extractor)


@pytest.fixture(scope='module')
def scenes():
    # held-out textured scenes (a seed range no training uses), holes big enough to matter
    sc = make_toy_scenes(120, seed=FEATURE_HELD_OUT_SEED + 7, **toy_world('v2', p_texture=1.0))
    return [s for s in sc if s.object_mask.sum() >= 20][:48]


def test_committed_features_rank_degradations(scenes):
    r = lpips_ranking(ToyLPIPS(), scenes)
    assert r['truth'] == 0 and r['truth'] < r['blur1'] < r['blur3'] < r['flat'] < r['noise'], r


def test_committed_features_rank_cfd_fills(scenes):
    import cv2
    from erase_core.metrics.entity import cfd
    feats = ToyPatchFeatures()
    score = {'oracle': [], 'telea': [], 'flat': []}
    for i, s in enumerate(scenes):
        telea = cv2.inpaint(np.ascontiguousarray(s.image), s.object_mask.astype(np.uint8), 3, cv2.INPAINT_TELEA)
        for k, img in (('oracle', s.clean), ('telea', telea), ('flat', degrade(s.image, s.object_mask, 'flat', np.random.default_rng(i)))):
            score[k].append(cfd(img, s.object_mask, feats)['cfd'])
    m = {k: np.mean(v) for k, v in score.items()}
    assert m['oracle'] < m['telea'] < m['flat'], m


def test_extractor_names_say_which_weights():
    assert 'trained on the toy world' in ToyLPIPS().extractor and 'trained' in ToyPatchFeatures().name
    assert 'given weights' in ToyLPIPS(ToyFeatureNet()).extractor
    fid = toy_fid_extractor()
    assert fid.num_features == 128 and fid(torch.rand(2, 3, 64, 64)).shape == (2, 128)


def test_fills_keep_pixels_outside_the_hole(scenes):
    s = scenes[0]
    for k, img in hole_fills(s).items():
        assert (img[~s.object_mask] == s.clean[~s.object_mask]).all(), k


@pytest.mark.parametrize('call, err, match', [
    (lambda: degrade(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), bool), 'melt', np.random.default_rng(0)), InputError, 'melt'),
    (lambda: degrade(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), bool), 'swap', np.random.default_rng(0)), InputError, 'other'),
    (lambda: ToyLPIPS(ToyFeatureNet())(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 8, 8)), InputError, 'differ'),
    (lambda: load_toy_features('/nonexistent/features'), MissingFileError, 'nonexistent'),
])
def test_bad_input(call, err, match):
    with pytest.raises(err, match=match): call()


def test_damage_kinds_all_change_the_region():
    img = make_toy_scenes(2, seed=3, **toy_world('v2'))
    region = np.zeros((64, 64), bool); region[20:40, 20:40] = True
    for k in DAMAGE_KINDS:
        out = degrade(img[0].image, region, k, np.random.default_rng(1), other=img[1].image)
        assert out.dtype == np.uint8 and (out[~region] == img[0].image[~region]).all() and (out[region] != img[0].image[region]).any(), k
