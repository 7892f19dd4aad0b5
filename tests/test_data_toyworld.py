"""The toy world: determinism, ground-truth invariants, effects, hole modes, speed."""
import time

import numpy as np
import pytest

from erase_core.core import InputError
from erase_core.data.toyworld import (HOLE_MODES, TOY_CATEGORIES, TOY_STUFF_IDS, TOY_THING_IDS, ToyScene, make_toy_scene,
                                      make_toy_scenes)


def _same(a: ToyScene, b: ToyScene):
    return all((getattr(a, k) == getattr(b, k)).all() for k in
               ('image', 'clean', 'object_mask', 'effect_mask', 'entities', 'entities_clean', 'hole')) and a.entity_category == b.entity_category


def test_deterministic_from_seed():
    for seed in (0, 5, (3, 9)):
        assert _same(make_toy_scene(seed), make_toy_scene(seed))
    assert not (make_toy_scene(1).image == make_toy_scene(2).image).all()


def test_scene_sets_with_different_seeds_are_disjoint_and_indexable():
    a, b = make_toy_scenes(20, seed=0), make_toy_scenes(20, seed=1)
    keys = {x.image.tobytes() for x in a}
    assert not any(x.image.tobytes() in keys for x in b)
    assert _same(a[7], make_toy_scene((0, 7)))
    assert len({x.id for x in a}) == 20


@pytest.mark.parametrize('size', [32, 64, 128])
def test_ground_truth_invariants(size):
    for s in make_toy_scenes(25, size=size, seed=3):
        assert s.image.shape == s.clean.shape == (size, size, 3) and s.image.dtype == np.uint8
        for m in (s.object_mask, s.effect_mask, s.hole): assert m.shape == (size, size) and m.dtype == bool
        assert s.entities.dtype == np.int32 and s.entities.min() > 0 and s.entities_clean.min() > 0
        # the clean plate differs from the image only inside the object+effect mask
        diff = (s.image != s.clean).any(-1)
        assert not (diff & ~s.effect_mask).any()
        assert (s.object_mask <= s.effect_mask).all()
        # effects really change pixels (an effect pixel that equals the clean plate would be a wrong mask)
        eff_only = s.effect_mask & ~s.object_mask
        assert diff[eff_only].mean() > 0.9 if eff_only.any() else True
        # the target entity is exactly the object, and only in the full scene
        assert ((s.entities == s.target_entity) == s.object_mask).all()
        assert not (s.entities_clean == s.target_entity).any()
        # entity maps agree outside the object; categories are known
        assert (s.entities[~s.object_mask] == s.entities_clean[~s.object_mask]).all()
        assert set(np.unique(s.entities)) | set(np.unique(s.entities_clean)) <= set(s.entity_category)
        assert set(s.entity_category.values()) <= {c['id'] for c in TOY_CATEGORIES}
        assert s.object_category in TOY_THING_IDS
        assert all(s.entity_category[e] in TOY_STUFF_IDS or s.entity_category[e] in TOY_THING_IDS for e in s.entity_category)


def test_forced_effects():
    refl = [make_toy_scene(i, p_water=1, p_in_water=1) for i in range(30)]
    shad = [make_toy_scene(i, p_water=0, p_shadow=1) for i in range(30)]
    none = [make_toy_scene(i, p_water=0, p_shadow=0) for i in range(30)]
    assert sum(s.reflection_mask.any() for s in refl) >= 25 and not any(s.shadow_mask.any() for s in refl)
    assert sum(s.shadow_mask.any() for s in shad) >= 25 and not any(s.reflection_mask.any() for s in shad)
    assert all((s.effect_mask == s.object_mask).all() for s in none)
    # reflections lie in water, below the object
    water = next(c['id'] for c in TOY_CATEGORIES if c['name'] == 'water')
    for s in refl:
        if s.reflection_mask.any():
            cats = np.vectorize(s.entity_category.get)(s.entities_clean[s.reflection_mask])
            assert (cats == water).all()


def test_hole_modes():
    for i in range(10):
        o = make_toy_scene(i, hole='object'); e = make_toy_scene(i, hole='effect')
        assert (o.hole == o.object_mask).all() and (e.hole == e.effect_mask).all()
        assert (o.target == o.clean).all() and o.meta['hole'] == 'object'
        p = make_toy_scene(i, hole='partial')
        cover = (p.hole & p.object_mask).sum() / p.object_mask.sum()
        assert 0.1 <= cover <= 0.9 and (p.target == p.image).all()
        r = make_toy_scene(i, hole='random')
        assert 0.02 <= r.hole.mean() <= 0.5 and (r.target == r.image).all()
        assert not make_toy_scene(i, hole='none').hole.any()
    # the hole is drawn last: the scene itself does not depend on the hole mode
    assert all((make_toy_scene(6, hole=h).image == make_toy_scene(6).image).all() for h in HOLE_MODES)
    d = make_toy_scene(4, hole='object', hole_dilate=2)
    assert (d.hole >= d.object_mask).all() and d.hole.sum() > d.object_mask.sum()
    assert set(HOLE_MODES) == {'object', 'effect', 'partial', 'random', 'none'}


def test_small_objects_option():
    small = make_toy_scenes(20, size=128, seed=2, object_scale=(0.03, 0.06))
    big = make_toy_scenes(20, size=128, seed=2)
    assert np.mean([s.object_mask.mean() for s in small]) * 4 < np.mean([s.object_mask.mean() for s in big])


def test_bad_options():
    with pytest.raises(InputError, match='hole'): make_toy_scene(0, hole='all')
    with pytest.raises(InputError, match='seed'): make_toy_scene(-1)
    for bad in ((-1, 2), (1.5, 2), (), True):
        with pytest.raises(InputError, match='seed'): make_toy_scene(bad)
    with pytest.raises(InputError, match='size'): make_toy_scene(0, size=8)
    with pytest.raises(InputError, match='object_scale'): make_toy_scene(0, object_scale=(0.3, 0.1))
    with pytest.raises(InputError, match='shape'): make_toy_scene(0, shapes=['hexagon'])


def test_thousands_of_scenes_in_seconds():
    t = time.perf_counter(); make_toy_scenes(500); dt = time.perf_counter() - t
    assert dt / 500 < 0.01, f"{dt / 500 * 1e3:.1f} ms per scene"   # 3000 scenes well under 30 s even on a slow runner


# --- the second world: periodic grounds, hidden objects, clutter ---
from erase_core.data.toyworld import GROUND_TEXTURES, TOY_MATERIAL_ID, TOY_WORLDS, ground_texture, toy_world


def test_first_world_is_the_default_and_unchanged_by_the_new_options():
    # the new random draws happen only when an option is on: off, the scenes are the first world's
    for i in range(40):
        assert _same(make_toy_scene((9, i)), make_toy_scene((9, i), **toy_world('v1')))
        assert _same(make_toy_scene((9, i), hole='random'), make_toy_scene((9, i), hole='random', p_texture=0, p_occlude=0.0))


def test_second_world_has_textures_occlusion_and_material_maps():
    sc = make_toy_scenes(120, seed=4, **toy_world('v2'))
    kinds = {s.meta['texture'] for s in sc}
    assert set(GROUND_TEXTURES) <= kinds and None in kinds
    hidden = [s for s in sc if s.meta['occluded']]
    assert len(hidden) > 30
    for s in hidden:
        for e in s.meta['occluded']:
            seen, whole = (s.entities == e).sum(), (s.entities_clean == e).sum()
            assert 0 <= seen < whole                       # partly (or wholly) hidden by the target, whole in the clean plate
            assert (s.entities_clean[s.object_mask] == e).any()
    for s in sc:
        assert s.materials.shape == s.materials_clean.shape == s.entities.shape
        assert (s.materials[s.object_mask] == s.object_category).all()
        ground = s.entities_clean == next(e for e, c in s.entity_category.items() if c == 9) if 9 in s.entity_category.values() else None
        if s.meta['texture'] and ground is not None:
            assert (s.materials_clean[ground] == TOY_MATERIAL_ID[s.meta['texture']]).all()


def test_textures_are_periodic_patterns():
    rng = np.random.default_rng(0)
    c = np.array([0.6, 0.5, 0.3], np.float32)
    for k in GROUND_TEXTURES:
        t = ground_texture(rng, k, 64, c)
        assert t.shape == (64, 64, 3) and t.dtype == np.float32
        g = t.mean(-1) - t.mean()
        # strong autocorrelation at some shift of 3..16 px, unlike noise
        best = max(max((g * np.roll(g, d, 0)).mean(), (g * np.roll(g, d, 1)).mean()) for d in range(3, 17))
        assert best > 0.3 * (g * g).mean(), k


@pytest.mark.parametrize('kwargs, match', [
    (dict(p_texture=1.5), 'p_texture'), (dict(p_occlude=-0.1), 'p_occlude'),
    (dict(p_texture=1, textures=['tartan']), 'tartan'),
])
def test_second_world_bad_options(kwargs, match):
    with pytest.raises(InputError, match=match): make_toy_scene(0, **kwargs)


def test_world_names():
    assert set(TOY_WORLDS) >= {'v1', 'v2'} and toy_world('v2', n_distractors=(3, 6))['n_distractors'] == (3, 6)
    with pytest.raises(InputError, match='v9'): toy_world('v9')
    with pytest.raises(InputError, match='tartan'): ground_texture(np.random.default_rng(0), 'tartan', 64, np.ones(3, np.float32))
