"MSN, MARS (EntityErasure's definition) and CFD (OmniPaint's) in erase_core.metrics.entity."
import numpy as np
import pytest
import torch
from PIL import Image
from erase_core.core import InputError
from erase_core.metrics.entity import (find_sundries, sundry_metrics, SundryMeter, cfd, DinoPatchFeatures, dedup_masks,
                                       EntityMaskGenerator, _score, _quirks)
from erase_core.models.segmenter import PrototypeSegmenter


@pytest.fixture(scope='module')
def feats(): return DinoPatchFeatures.random()


def _scene():
    ent = np.ones((40, 40), int)
    hole = np.zeros((40, 40), bool); hole[10:30, 10:30] = True       # 400 px
    return ent, hole


def test_planted_sundry_of_known_area():
    ent, hole = _scene()
    ent[12:20, 12:22] = 7                                            # 80 px wholly inside
    r = sundry_metrics(ent, hole)
    assert r == dict(msn=1.0, mars=pytest.approx(80 / 400))
    s, = find_sundries(ent, hole)
    assert s['id'] == 7 and s['ios'] == 1.0


def test_entity_wholly_inside_counts_and_crossing_does_not():
    ent, hole = _scene()
    ent[12:16, 12:16] = 2                                            # inside
    ent[25:35, 25:35] = 3                                            # 25 of 100 px inside
    ent[20:28, 12:20] = 4                                            # inside
    r = sundry_metrics(ent, hole)
    assert r['msn'] == 2 and r['mars'] == pytest.approx((16 + 64) / 400)


def test_thresholds_are_strict():
    ent, hole = _scene()
    ent[12:14, 12:13] = 2                                            # 2 px: ratio 0.005, not > 0.005
    assert sundry_metrics(ent, hole)['msn'] == 0
    assert sundry_metrics(ent, hole, min_hole_ratio=0.004)['msn'] == 1
    ent2, _ = _scene(); ent2[10:30, 30:31] = 5; ent2[12:31, 12:13] = 5   # 19 px inside of 39: IoS < 0.95
    assert sundry_metrics(ent2, hole)['msn'] == 0


def test_soft_hole_is_binarised_at_half():
    ent, hole = _scene()
    ent[5:9, 5:9] = 2                                                # 16 px just outside the hole
    soft = hole.astype(float); soft[4:10, 4:36] = np.maximum(soft[4:10, 4:36], 0.4)   # a faint halo over it
    assert sundry_metrics(ent, soft) == dict(msn=0.0, mars=0.0)
    assert sundry_metrics(ent, soft.astype(bool))['msn'] == 1        # as a hard hole the halo would make it a sundry
    assert sundry_metrics(ent, hole.astype(np.uint8) * 255) == dict(msn=0.0, mars=0.0)      # a 0/255 hole still works


def test_no_sundry_after_a_clean_erasure_and_nan_for_empty_hole():
    ent, hole = _scene()
    assert sundry_metrics(ent, hole) == dict(msn=0.0, mars=0.0)
    assert np.isnan(sundry_metrics(ent, np.zeros_like(hole))['mars'])
    with pytest.raises(InputError): sundry_metrics(ent, hole[:10])


def test_sundry_meter_with_a_segmenter():
    img = torch.zeros(1, 3, 64, 64); img[:, 1] = 0.6
    hole = torch.zeros(1, 1, 64, 64); hole[..., 16:48, 16:48] = 1
    out = img.clone(); out[..., 24:36, 24:36] = torch.tensor([.9, .1, .9])[:, None, None]
    m = SundryMeter(PrototypeSegmenter(torch.tensor([[0, .6, 0], [.9, .1, .9]]), margin=0.5))
    (r,) = m(out, hole)
    assert r['msn'] == 1 and 0.5 * 144 / 1024 < r['mars'] < 1.5 * 144 / 1024 and r['extractor'] == 'prototype(colour queries)'
    assert m(img, hole)[0]['msn'] == 0
    given = SundryMeter()
    assert given.extractor == 'given entities'
    with pytest.raises(InputError): given(img, hole)


def test_cfd_region_against_itself_is_zero(feats):
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    m = np.zeros((64, 64), bool); m[10:40, 5:30] = True
    assert _score(im, m, im, m, feats, frozenset()) == pytest.approx(0, abs=1e-6)


def test_cfd_foreign_fill_scores_worse(feats):
    stripes = np.zeros((64, 64, 3), np.uint8); stripes[::4] = 255; stripes[1::4] = 255
    hole = np.zeros((64, 64), bool); hole[20:44, 20:44] = True
    bad = stripes.copy(); bad[hole] = np.random.default_rng(0).integers(0, 255, (hole.sum(), 3))
    assert cfd(bad, hole, feats)['cfd'] > cfd(stripes, hole, feats)['cfd']


def test_cfd_components_labels_and_quirks(feats):
    img = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    hole = np.zeros((64, 64), bool); hole[5:20, 5:20] = True; hole[40:60, 40:60] = True
    r = cfd(img, hole, feats)
    assert r['n_components'] == 2 and r['extractor'] == 'dinov2-small(random weights)+none'
    rq = cfd(img, hole, feats, quirks='reference')
    assert rq['extractor'].endswith('(reference quirks)') and rq['cfd'] != r['cfd']
    assert np.isnan(cfd(img, np.zeros((64, 64), bool), feats)['cfd'])
    with pytest.raises(InputError): _quirks('nonsense')
    assert _quirks(('cls_offset', 'center_crop')) == {'cls_offset', 'center_crop'}


def test_cfd_segment_term_needs_an_inside_segment_and_a_boundary_neighbour(feats):
    img = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    hole = np.zeros((64, 64), bool); hole[16:48, 16:48] = True
    inside = np.zeros_like(hole); inside[24:40, 24:40] = True
    r = cfd(img, hole, feats, masks=[inside, ~inside])
    assert r['segments'] > 0
    assert cfd(img, hole, feats, masks=np.stack([inside, ~inside]))['cfd'] == pytest.approx(r['cfd'])   # an (N, H, W) array works too
    assert cfd(img, hole, feats, masks=[~inside])['segments'] == 0          # no inside segment
    far = np.zeros_like(hole); far[0:4, 0:4] = True
    assert cfd(img, hole, feats, masks=[inside, far])['segments'] == 0      # neighbour does not cross the hole


def test_cfd_given_masks_win_over_a_generator_and_are_labelled(feats):
    img = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    hole = np.zeros((64, 64), bool); hole[16:48, 16:48] = True
    inside = np.zeros_like(hole); inside[24:40, 24:40] = True
    calls = []
    class Gen:
        name = 'counting-generator'
        def __call__(self, image): calls.append(1); return []
    both, given = cfd(img, hole, feats, masks=[inside, ~inside], mask_generator=Gen()), cfd(img, hole, feats, masks=[inside, ~inside])
    assert not calls and both['cfd'] == given['cfd'] and both['extractor'] == given['extractor'] == 'dinov2-small(random weights)+given masks'
    assert cfd(img, hole, feats, mask_generator=Gen())['extractor'].endswith('+counting-generator') and calls == [1]


def test_dedup_masks():
    a = np.zeros((10, 10), bool); a[:5] = True
    b = a.copy(); b[5, 0] = True                                      # IoU > 0.8 with a
    c = np.zeros((10, 10), bool); c[:2, :2] = True                    # inside a
    d = ~a
    kept = dedup_masks([c, a, b, d])
    assert len(kept) == 2 and any((k == d).all() for k in kept)


def test_entity_mask_generator_named_after_segmenter():
    g = EntityMaskGenerator(PrototypeSegmenter(torch.tensor([[1., 1, 1], [0, 0, 0]]), margin=0.5))
    img = np.zeros((32, 32, 3), np.uint8); img[:, 16:] = 255
    ms = g(img)
    assert g.name == 'entities(prototype(colour queries))' and len(ms) == 2


# ---- the reference decisions (EntityErasure's evaluation_metric.py, OmniPaint's cfd_score/main.py) ----

def test_msn_soft_hole_rule_and_empty_hole_options():
    ent, hole = _scene()
    ent[5:9, 5:9] = 2                                                # 16 px just outside the hole
    soft = (hole * 255).astype(np.uint8); soft[4:10, 4:36] = np.maximum(soft[4:10, 4:36], 40)   # a faint 8-bit halo
    assert sundry_metrics(ent, soft) == dict(msn=0.0, mars=0.0)       # ours: cut at half the range
    # the reference: every non-zero pixel is hole -> the hole is 400 + 6*32 - 6*20 (overlap) px and entity 2 is inside it
    n_hole = (soft > 0).sum()
    assert sundry_metrics(ent, soft, hole_threshold=0) == dict(msn=1.0, mars=pytest.approx(16 / n_hole))
    assert sundry_metrics(ent, np.zeros_like(soft), empty='zero') == dict(msn=0.0, mars=0.0)
    assert np.isnan(sundry_metrics(ent, np.zeros_like(soft))['msn'])
    with pytest.raises(InputError, match='empty'): sundry_metrics(ent, soft, empty='skip')
    # the class default of the reference, 0.8: an entity 85 % inside counts only with the looser threshold
    ent3, _ = _scene(); ent3[20:40, 12:18] = 3                        # 20 rows x 6 cols = 120 px, 60 inside: IoS 0.5
    ent3[12:29, 20:25] = 4; ent3[29:32, 20:25] = 4                  # 85 px inside of 100: IoS 0.85
    assert sundry_metrics(ent3, hole)['msn'] == 0 and sundry_metrics(ent3, hole, ios_threshold=0.8)['msn'] == 1
    m = SundryMeter(hole_threshold=0, empty='zero')
    assert m(torch.zeros(1, 3, 40, 40), torch.from_numpy(soft)[None, None], entities=[ent])[0]['msn'] == 1


def test_cfd_ring_is_pil_inclusive_rectangle():
    from PIL import ImageDraw
    from erase_core.metrics.entity import ring_box
    hole = np.zeros((30, 40), bool); hole[5:14, 20:27] = True           # h 9 -> +3 rows, w 7 -> +2 cols
    canvas = Image.new('1', (40, 30), 0)
    l, u, r, b = Image.fromarray(hole).getbbox()
    ImageDraw.Draw(canvas).rectangle([max(0, l - (r - l) // 3), max(0, u - (b - u) // 3), min(40, r + (r - l) // 3), min(30, b + (b - u) // 3)], fill=1)
    assert (ring_box(hole) == np.asarray(canvas)).all()
    assert ring_box(hole).sum() == (9 + 6 + 1) * (7 + 4 + 1)


def test_cfd_uint8_hole_cut_above_127(feats):
    img = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    hole = np.zeros((64, 64), np.uint8); hole[20:40, 20:40] = 128; hole[10:50, 10:50][hole[10:50, 10:50] == 0] = 127
    assert cfd(img, hole, feats)['cfd'] == pytest.approx(cfd(img, hole > 127, feats)['cfd'])
    assert cfd(img, hole, feats, quirks='reference')['cfd'] == pytest.approx(cfd(img, hole > 127, feats, quirks='reference')['cfd'])


def test_cfd_segment_resize_option(feats):
    img = np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    hole = np.zeros((64, 64), bool); hole[16:48, 16:48] = True
    inside = np.zeros_like(hole); inside[22:35, 25:41] = True            # odd sizes: bicubic and nearest part at the edges
    a = cfd(img, hole, feats, masks=[inside, ~inside])
    b = cfd(img, hole, feats, masks=[inside, ~inside], segment_resize='nearest')
    assert a['ring'] == b['ring'] and a['segments'] > 0 and b['segments'] > 0
    with pytest.raises(InputError, match='segment_resize'): cfd(img, hole, feats, masks=[inside, ~inside], segment_resize='area')


def _omnipaint_cfd(image, mask_u8, sam_masks, processor, model):
    "OmniPaint's cfd_score/main.py followed step by step (cv2 + PIL + the DINOv2 image processor), for one image."
    import cv2
    from PIL import ImageDraw

    def dino(im1, m1, im2, m2):
        feats = []
        for im, m, resample in ((im1, m1, Image.NEAREST), (im2, m2, None)):
            im = im.resize((224, 224))
            m = m.resize((224, 224), resample) if resample is not None else m.resize((224, 224))
            with torch.no_grad():
                h = model(**processor(images=im, return_tensors='pt')).last_hidden_state
            h = (h / h.norm(p=2, dim=-1, keepdim=True))[0].numpy()
            sel = np.append(np.array(m.resize((16, 16), Image.NEAREST)).flatten(), True)
            f = h[sel.flatten()].mean(0)
            feats.append(f / np.linalg.norm(f))
        return 1 - feats[0] @ feats[1]

    def crop(mask, im):
        res = im.copy(); res[mask == 0] = [255, 255, 255]
        x, y, w, h = cv2.boundingRect(cv2.findNonZero(mask.astype(np.uint8) * 255))
        return res[y:y + h, x:x + w], mask[y:y + h, x:x + w]

    def adjacent(a, b):
        k = np.ones((5, 5), np.uint8)
        a8, b8 = a.astype(np.uint8) * 255, b.astype(np.uint8) * 255
        return np.any(cv2.dilate(a8, k, iterations=3) & b8) or np.any(cv2.dilate(b8, k, iterations=3) & a8)

    pil = Image.fromarray(image).convert('RGB')
    kept = []
    for m in sorted(sam_masks, key=lambda d: -d['area']):
        s = m['segmentation']
        if any((np.logical_and(s, k).sum() / np.logical_or(s, k).sum()) > 0.8 or np.logical_and(s, k).sum() / s.sum() > 0.9 for k in kept): continue
        kept.append(s)
    _, binary = cv2.threshold(mask_u8, 127, 255, cv2.THRESH_BINARY)
    n, labels = cv2.connectedComponents(binary)
    total = 0.
    for i in range(1, n):
        comp = np.zeros_like(mask_u8); comp[labels == i] = 255
        ref = Image.fromarray(comp).convert('1'); refa = np.array(ref)
        bound = [k & refa for k in kept if not np.all(k <= refa) and np.any(k & refa)]
        center = [k for k in kept if np.all(k <= refa)]
        l, u, r, b = ref.getbbox(); w, h = r - l, b - u
        box = Image.new('1', pil.size, 0)
        ImageDraw.Draw(box).rectangle([max(0, l - w // 3), max(0, u - h // 3), min(pil.width, r + w // 3), min(pil.height, b + h // 3)], fill=1)
        score = dino(pil, ref, pil, Image.fromarray(np.array(box) ^ refa))
        areas = [c.sum() for c in center]
        for j, c in enumerate(center):
            merged = np.zeros_like(c)
            for bm in bound:
                if adjacent(bm, c): merged |= bm
            if merged.any():
                bi, bmask = crop(merged, image); ci, cmask = crop(c, image)
                d = dino(Image.fromarray(bi), Image.fromarray(bmask).convert('L'), Image.fromarray(ci), Image.fromarray(cmask).convert('L'))
                score += areas[j] * d / sum(areas)
        total += score
    return total / (n - 1)


def test_cfd_reference_quirks_equal_omnipaint_by_hand(feats):
    from transformers import BitImageProcessor
    processor = BitImageProcessor(size={'shortest_edge': 256}, crop_size={'height': 224, 'width': 224}, do_center_crop=True,
                                  resample=3, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])   # dinov2's
    rng = np.random.default_rng(5)
    img = np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)          # blocky texture
    img = np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
    hole = np.zeros((64, 64), np.uint8); hole[14:37, 12:41] = 255; hole[12:39, 10:43][hole[12:39, 10:43] == 0] = 100   # soft halo
    hole[50:64, 45:60] = 200                                            # a second component at the border
    inside = np.zeros((64, 64), bool); inside[18:29, 17:30] = True        # wholly inside component 1
    cross = np.zeros((64, 64), bool); cross[30:45, 5:35] = True           # crosses component 1's border
    edge = np.zeros((64, 64), bool); edge[55:64, 40:64] = True            # crosses component 2's border
    dup = cross.copy(); dup[44, 5:8] = False                              # a near-duplicate (dropped by the filter)
    masks = [inside, cross, edge, dup, ~(inside | cross | edge)]
    sam = [dict(segmentation=m, area=int(m.sum())) for m in masks]
    expect = _omnipaint_cfd(img, hole, sam, processor, feats.model)
    ours = cfd(img, hole, feats, masks=masks, quirks='reference')
    assert ours['n_components'] == 2 and ours['segments'] > 0
    assert ours['cfd'] == pytest.approx(float(expect), abs=1e-5)
