"Behaviour of YOEO's pair-free losses (erase_core.losses.erasure) against values worked out by hand."
import math
from types import SimpleNamespace as NS
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from erase_core.core import InputError
from erase_core.losses.erasure import (object_probability, intersection_over_self, select_sundries, SundrySelection,
                                       sundry_suppression_loss, entity_feature_consistency_loss, entities_from_predictions,
                                       entity_masks_from_map, entity_masks_at, entities_with_teacher, erasure_losses,
                                       sundry_region, grad_scale, cap_gradient)
from erase_core.models.segmenter import PrototypeSegmenter

sig = lambda x: 1 / (1 + math.exp(-x))
sp = lambda x: math.log1p(math.exp(x))


def test_object_probability_is_one_minus_no_object():
    cl = torch.tensor([[[1., 2., 0.]]])
    p = torch.softmax(cl, -1)[0, 0]
    assert object_probability(cl).item() == pytest.approx(1 - p[-1].item())


def test_ios_soft_by_hand():
    # one query on a 1x2 grid: logits 0 and ln 3 -> sigmoid 0.5 and 0.75; hole covers the second pixel
    ml = torch.tensor([[[[0., math.log(3)]]]])
    hole = torch.tensor([[[[0., 1.]]]])
    assert intersection_over_self(ml, hole).item() == pytest.approx(0.75 / 1.25)


def test_ios_has_no_gradient_and_resizes_hole():
    ml = torch.randn(2, 3, 4, 4, requires_grad=True)
    hole = torch.zeros(2, 1, 16, 16); hole[..., :8, :] = 1
    ios = intersection_over_self(ml, hole)
    assert not ios.requires_grad and ios.shape == (2, 3)
    assert torch.allclose(ios, intersection_over_self(ml, F.interpolate(hole, size=(4, 4))))


def test_selection_thresholds():
    big = 30.
    ml = torch.full((1, 3, 4, 4), -big)
    ml[0, :, 0:2, 0:2] = big                                  # all three wholly inside the hole
    hole = torch.zeros(1, 1, 4, 4); hole[..., :2, :2] = 1
    # object probabilities 0.9, 0.25, 0.15 (two-class softmax: p = sigmoid(a - b))
    cl = torch.tensor([[[math.log(9), 0.], [math.log(1 / 3), 0.], [math.log(0.15 / 0.85), 0.]]])
    sel = select_sundries(cl, ml, hole)
    assert sel.selected.tolist() == [[True, True, False]]
    assert select_sundries(cl, ml, hole, prob_threshold=0.3).selected.tolist() == [[True, False, False]]
    ml[0, 0, 3, 3] = big                                      # one pixel outside -> IoS 4/5 = 0.8 < 0.9
    assert not select_sundries(cl, ml, hole).selected[0, 0]
    assert select_sundries(cl, ml, hole, ios_threshold=0.75).selected[0, 0]


def _one_sundry():
    ml = torch.tensor([[[[2., -1.], [0., -9.]], [[-5., 5.], [-5., 5.]]]], requires_grad=True)
    cl = torch.tensor([[[1., 0.], [1., 0.]]], requires_grad=True)
    hole = torch.tensor([[[[1., 0.], [1., 0.]]]])
    sel = SundrySelection(torch.tensor([[True, False]]), torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([[True, False]]))
    return ml, cl, hole, sel


def test_ss_terms_by_hand():
    ml, cl, hole, sel = _one_sundry()
    out = sundry_suppression_loss(cl, ml, hole, selection=sel, scale=1.0)
    assert out.mask.item() == pytest.approx((sp(2) + sp(0)) / 4)
    assert out.prob.item() == pytest.approx(math.log(1 + math.e) * 0.25)
    half = sundry_suppression_loss(cl, ml, hole, selection=sel, scale=0.5)
    assert half.mask.item() == pytest.approx(0.5 * (sp(2) + sp(0)) / 4) and half.prob.item() == pytest.approx(0.5 * math.log(1 + math.e) / 4)
    assert out.loss.item() == pytest.approx(out.mask.item() + out.prob.item())


def test_ss_batch_mean_and_switches():
    ml, cl, hole, sel = _one_sundry()
    ml2, cl2, hole2 = ml.detach().repeat(2, 1, 1, 1), cl.detach().repeat(2, 1, 1), hole.repeat(2, 1, 1, 1)
    sel2 = SundrySelection(torch.tensor([[True, False], [False, False]]), torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2, dtype=bool))
    one = sundry_suppression_loss(cl, ml, hole, selection=sel, scale=0.5).loss.item()
    assert sundry_suppression_loss(cl2, ml2, hole2, selection=sel2, scale=0.5).loss.item() == pytest.approx(one / 2)
    assert sundry_suppression_loss(cl, ml, hole, selection=sel, mask_term=False, scale=0.5).mask.item() == 0
    assert sundry_suppression_loss(cl, ml, hole, selection=sel, prob_term=False, scale=0.5).prob.item() == 0


def test_ss_mask_gradient_only_inside_hole_and_only_on_sundry():
    ml, cl, hole, sel = _one_sundry()
    sundry_suppression_loss(cl, ml, hole, selection=sel, prob_term=False, scale=1.0).loss.backward()
    g = ml.grad[0]
    assert (g[0, :, 1] == 0).all() and (g[0, :, 0] > 0).all()      # outside the hole: none; inside: pushes logits down
    assert (g[1] == 0).all()                                         # the non-sundry query is untouched
    assert g[0, 0, 0].item() == pytest.approx(sig(2) / 4)


def test_ss_no_sundry_is_zero_and_differentiable():
    ml = torch.randn(1, 2, 4, 4, requires_grad=True)
    cl = torch.tensor([[[-5., 5.], [-5., 5.]]])                    # nothing is an object
    out = sundry_suppression_loss(cl, ml, torch.ones(1, 1, 4, 4), scale=0.5)
    assert out.loss.item() == 0 and not out.selection.selected.any()
    out.loss.backward()                                              # no error, zero gradient
    assert ml.grad.abs().sum() == 0


def test_ss_bad_shapes():
    with pytest.raises(InputError, match='class_logits'): sundry_suppression_loss(torch.zeros(1, 2), torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 4, 4), scale=1.0)
    with pytest.raises(InputError, match='hole'): sundry_suppression_loss(torch.zeros(1, 2, 2), torch.zeros(1, 2, 4, 4), torch.ones(2, 1, 4, 4), scale=1.0)
    with pytest.raises(TypeError, match='scale'): sundry_suppression_loss(torch.zeros(1, 2, 2), torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 4, 4))


def test_efc_by_hand_and_detached_centroid():
    feat = torch.tensor([[[1., 0.], [1., 1.]], [[0., 1.], [0., 1.]]])[None].requires_grad_()
    hole = torch.tensor([[[[0., 1.], [0., 1.]]]])
    loss = entity_feature_consistency_loss(feat, hole, torch.ones(1, 2, 2, dtype=torch.long))
    assert loss.item() == pytest.approx((1 + 1 - 1 / math.sqrt(2)) / 2)
    loss.backward()
    assert feat.grad[..., 0].abs().sum() == 0 and feat.grad[..., 1].abs().sum() > 0


def test_efc_skips_entities_wholly_inside_or_outside():
    feat = torch.randn(1, 4, 8, 8)
    hole = torch.zeros(1, 1, 8, 8); hole[..., 2:6, 2:6] = 1
    ent = torch.zeros(1, 8, 8, dtype=torch.long); ent[0, 3:5, 3:5] = 1; ent[0, 0, :] = 2   # inside only / outside only
    assert entity_feature_consistency_loss(feat, hole, ent).item() == 0


def test_grad_scale_and_cap():
    x = torch.tensor([1., 2.], requires_grad=True)
    y = grad_scale(x * 3, 0.5).sum()
    assert y.item() == 9
    g, = torch.autograd.grad(y, x)
    assert torch.allclose(g, torch.full((2,), 1.5))
    ref, aux = (x ** 2).sum(), 10 * x.sum()
    capped, k = cap_gradient(aux, ref, x, rescale=2.0)
    assert capped.item() == aux.item()
    g, = torch.autograd.grad(capped, x)
    assert g.norm().item() == pytest.approx(math.sqrt(20) / 2, rel=1e-5)
    assert cap_gradient(0.01 * x.sum(), ref, x)[1] == 1.0
    with pytest.raises(InputError): cap_gradient(aux, ref, x, rescale=0)
    y = torch.tensor([3.], requires_grad=True)                       # reaches the loss but not `wrt`: norm 0
    assert cap_gradient((y * 5).sum(), ref, x)[1] == 1.0
    capped, k = cap_gradient(10 * x.sum(), (y * 5).sum(), x)         # a reference that does not reach `wrt`: bound 0
    assert k == 0.0 and torch.autograd.grad(capped, x)[0].abs().sum() == 0


def test_planted_sundry_gradient_concentrates_on_it():
    g = torch.Generator().manual_seed(0)
    img = torch.zeros(1, 3, 64, 64); img[:, 1] = 0.6
    hole = torch.zeros(1, 1, 64, 64); hole[..., 16:48, 16:48] = 1
    planted = torch.zeros_like(hole); planted[..., 24:32, 28:36] = 1
    x = img * (1 - planted) + planted * (torch.tensor([.9, .1, .9])[:, None, None] + 0.05 * torch.randn(1, 3, 64, 64, generator=g))
    x = x.clamp(0, 1).requires_grad_()
    seg = PrototypeSegmenter(torch.tensor([[.9, .1, .9], [0., .6, 0.]]))
    o = seg(x)
    ss = sundry_suppression_loss(o.class_logits, o.mask_logits, hole, scale=0.5)
    assert ss.selection.selected.tolist() == [[True, False]]
    ss.loss.backward()
    gm = x.grad.abs().sum(1)[0]
    assert (gm * planted[0, 0]).sum() / gm.sum() > 0.95


def test_object_probability_official_first_class():
    cl = torch.log(torch.tensor([[[0.1, 0.6, 0.3]]]))          # p(first) 0.1, p(second) 0.6, p(no-object) 0.3
    assert object_probability(cl).item() == pytest.approx(0.7)
    assert object_probability(cl, 'first').item() == pytest.approx(0.1)
    with pytest.raises(InputError, match='object_prob'): object_probability(cl, 'max')
    ml = torch.full((1, 1, 2, 2), 20.)
    hole = torch.ones(1, 1, 2, 2)
    assert select_sundries(cl, ml, hole).selected.item() and not select_sundries(cl, ml, hole, object_prob='first').selected.item()


def test_efc_cell_vs_entity_weighting_with_overlap_by_hand():
    # features on a 1x4 grid: (1,0) (0,1) (1,0) (0,1); hole = the right two cells
    feat = torch.tensor([[[1., 0., 1., 0.]], [[0., 1., 0., 1.]]])[None]
    hole = torch.tensor([[[[0., 0., 1., 1.]]]])
    a = torch.tensor([[True, False, True, True]])              # out: cell 0 -> centroid (1,0)
    b = torch.tensor([[True, True, False, True]])              # out: cells 0, 1 -> centroid (1,1)/sqrt2
    ents = [torch.stack([a, b])]
    # cell 2: A only, loss 0; cell 3: A (loss 1) and B (loss 1 - 1/sqrt2) -> per cell (2 - 1/sqrt2) / 2
    cell = (0 + (2 - 1 / math.sqrt(2)) / 2) / 2
    entity = ((0 + 1) / 2 + (1 - 1 / math.sqrt(2))) / 2
    assert entity_feature_consistency_loss(feat, hole, ents).item() == pytest.approx(cell)
    assert entity_feature_consistency_loss(feat, hole, ents, weighting='entity').item() == pytest.approx(entity)
    with pytest.raises(InputError, match='weighting'): entity_feature_consistency_loss(feat, hole, ents, weighting='pixel')


def test_efc_fractional_cover_counts_each_cell_once():
    # features 1x2, hole 2x4: the left feature cell is half covered -> weight 0.5 in, 0.5 out
    feat = torch.tensor([[[[1., 0.]], [[0., 1.]]]])                  # (1, 2, 1, 2): left (1,0), right (0,1)
    hole = torch.tensor([[[[0., 1., 1., 1.], [0., 1., 1., 1.]]]])
    ent = torch.ones(1, 2, 4, dtype=torch.long)
    # centroid (1, 0); in-hole cells: left (cover 0.5, loss 0), right (cover 1, loss 1)
    assert entity_feature_consistency_loss(feat, hole, ent).item() == pytest.approx((0 + 1) / 2)              # per cell
    assert entity_feature_consistency_loss(feat, hole, ent, weighting='entity').item() == pytest.approx(1 / 1.5)
    assert entity_feature_consistency_loss(feat, hole, ent, scale=0.5).item() == pytest.approx(0.25)


def test_entity_logits_minus_inf_then_bilinear_by_hand():
    # one entity on a 1x3 logit row, a sundry on the right cell; brought to 1x6.
    # bilinear samples x = d/2 - 1/4 -> 0 (clamped), .25, .75, 1.25, 1.75, 2 (clamped): the last three touch the sundry
    ml = torch.tensor([[[[2., 2., 2.]], [[-20., -20., 20.]]]])
    cl = torch.tensor([[[3., -3.], [3., -3.]]])
    hole = torch.tensor([[[[0., 0., 1.]]]])
    lg, = entities_from_predictions(cl, ml, hole)
    assert lg.is_floating_point() and lg.tolist() == [[[2., 2., -math.inf]]]
    assert entity_masks_at(lg, (1, 6)).tolist() == [[[True, True, True, False, False, False]]]
    bm, = entities_from_predictions(cl, ml, hole, as_logits=False)
    assert bm.dtype == torch.bool and entity_masks_at(bm, (1, 6)).tolist() == [[[True, True, True, True, False, False]]]
    # without a sundry the logits pass through untouched
    lg2, = entities_from_predictions(cl, ml, torch.zeros(1, 1, 1, 3))
    assert torch.equal(lg2, ml[0])


def test_entities_from_predictions_drop_sundries():
    big = 30.
    ml = torch.full((1, 3, 4, 4), -big)
    ml[0, 0, :, :2] = big            # an entity crossing the hole border (hole = middle columns)
    ml[0, 1, 1:3, 1:3] = big         # a sundry inside the hole
    ml[0, 2, :, 3] = big             # improbable query
    cl = torch.tensor([[[3., -3.], [3., -3.], [-3., 3.]]])
    hole = torch.zeros(1, 1, 4, 4); hole[..., 1:3] = 1
    ents, = entities_from_predictions(cl, ml, hole, as_logits=False)
    assert ents.shape[0] == 1
    assert not ents[0, 1:3, 1].any() and ents[0, 0, 1]             # the sundry's pixels were cut out of the kept entity
    ents_keep, = entities_from_predictions(cl, ml, hole, remove_sundry_pixels=False, as_logits=False)
    assert ents_keep[0, 1:3, 1].all()
    lg, = entities_from_predictions(cl, ml, hole)
    assert (lg[0, 1:3, 1] == -math.inf).all() and lg[0, 0, 1] == big


def test_sundry_region_official_rule_by_hand():
    # 2x10 mask grid, hole = left 7 columns. Query 0: 7 cells in + 1 out at +20, two more in-hole cells at -2 and -2.5
    ml = torch.full((1, 2, 2, 10), -20.)
    ml[0, 0, 0, :8] = 20.; ml[0, 0, 1, 0] = -2.; ml[0, 0, 1, 1] = -2.5
    ml[0, 1, :, 5:] = 20.                                     # a query across the border (IoS 0.2)
    cl = torch.tensor([[[3., -3.], [3., -3.]]])
    hole = torch.zeros(1, 1, 2, 10); hole[..., :7] = 1
    ios = (7 + sig(-2) + sig(-2.5)) / (8 + sig(-2) + sig(-2.5))
    assert 0.85 < ios < 0.9
    out = NS(class_logits=cl, mask_logits=ml)
    r = sundry_region(out, hole)
    expect = torch.zeros(2, 10); expect[0, :8] = 1; expect[1, 0] = 1   # sigmoid(-2) = 0.12 > 0.1, sigmoid(-2.5) = 0.076
    assert r.shape == (1, 1, 2, 10) and torch.equal(r[0, 0], expect)
    assert not select_sundries(cl, ml, hole).selected.any()           # L_SS's own rule (IoS > 0.9) does not select it
    assert sundry_region(out, hole, ios_threshold=0.9).sum() == 0
    assert sundry_region(out, hole, (4, 20)).shape == (1, 1, 4, 20)
    cl3 = torch.log(torch.tensor([[[0.1, 0.6, 0.3], [0.1, 0.6, 0.3]]]))
    assert sundry_region(NS(class_logits=cl3, mask_logits=ml), hole).sum() == 9
    assert sundry_region(NS(class_logits=cl3, mask_logits=ml), hole, object_prob='first').sum() == 0
    with pytest.raises(InputError, match='selected'): sundry_region(out, hole, selected=torch.tensor([[True]]))


# ---- following the official code (zyxunh/YOEO mars_loss.py, remove_loss.py) step by step, with loops ----

def _official_entities(cl, ml, hole, ios_thres, score_thres=0.2):
    prob = cl.softmax(-1)[..., 0]
    hole_r = F.interpolate(hole, size=ml.shape[-2:], mode='nearest-exact')
    s = ml.sigmoid()
    ios = (s * hole_r).sum((-2, -1)) / s.sum((-2, -1)).clamp(min=1e-4)
    out, sundry_logits = [], []
    for b in range(ml.shape[0]):
        ok, inside = prob[b] > score_thres, ios[b] > ios_thres
        kept = ml[b][ok & ~inside].clone()
        sund = ml[b][ok & inside]
        if len(sund): kept[:, sund.max(0)[0].sigmoid() > 0.2] = -math.inf
        out.append(kept)
        sel = ok & inside
        sundry_logits.append(ml[b][sel].max(0)[0] if sel.any() else torch.full(ml.shape[-2:], -math.inf))
    return out, torch.stack(sundry_logits), (prob > score_thres) & (ios > ios_thres), hole_r


def _pool_cells(mask, h, w):
    "adaptive average pooling written out: cell (i, j) averages rows floor(iH/h)..ceil((i+1)H/h)."
    H, W = mask.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            r0, r1 = (i * H) // h, -(-((i + 1) * H) // h)
            c0, c1 = (j * W) // w, -(-((j + 1) * W) // w)
            out[i, j] = mask[r0:r1, c0:c1].mean()
    return out


def _official_efc_image(feat, ents, hole):
    "feat (C, h, w) numpy, ents bool (K, H, W) numpy, hole (H, W) numpy."
    C, h, w = feat.shape
    win, wout = [], []
    for e in ents:
        inn, out = e & (hole > 0.5), e & (hole < 0.5)
        if inn.any() and out.any():
            win.append(_pool_cells(inn.astype(float), h, w)); wout.append(_pool_cells(out.astype(float), h, w))
    if not win: return 0.0
    fn = feat / np.maximum(np.linalg.norm(feat, axis=0, keepdims=True), 1e-12)
    cents = []
    for wo in wout:
        c = (feat * wo).sum((1, 2)) / max(wo.sum(), 1e-4)
        cents.append(c / max(np.linalg.norm(c), 1e-12))
    total = count = 0.0
    for i in range(h):
        for j in range(w):
            cover = sum(wi[i, j] for wi in win)
            if cover == 0: continue
            num = sum(wi[i, j] * (1 - fn[:, i, j] @ c) for wi, c in zip(win, cents))
            total += num / max(cover, 1e-4); count += cover / max(cover, 1e-4)
    return total / max(count, 1e-4)


def _random_case(seed, B=2, Q=5, K=3):
    g = torch.Generator().manual_seed(seed)
    ml = F.interpolate(6 * torch.randn(B, Q, 3, 3, generator=g), size=(8, 8), mode='bilinear', align_corners=False)
    ml[:, 0] = -12.; ml[:, 0, 3:5, 3:6] = 12.                  # a sundry in the hole of every image
    cl = 2 * torch.randn(B, Q, K, generator=g); cl[:, 0] = -2.; cl[:, 0, 0] = 4.
    hole = torch.zeros(B, 1, 32, 32)
    for b in range(B):
        y0, x0 = torch.randint(5, 9, (2,), generator=g).tolist()        # always covers the planted sundry (mask cells 3:5, 3:6)
        hole[b, :, y0:y0 + 18, x0:x0 + 18] = 1
    feat = torch.randn(B, 4, 8, 8, generator=g)
    return NS(class_logits=cl, mask_logits=ml, features=feat), hole


@pytest.mark.parametrize('seed', range(8))
def test_losses_equal_the_official_code_on_random_cases(seed):
    out, hole = _random_case(seed)
    cl, ml = out.class_logits, out.mask_logits
    B, Q, h, w = ml.shape
    ents, _, sel, hole_r = _official_entities(cl, ml, hole, ios_thres=0.9)
    assert sel.any()
    # SS (mars_loss.py): sums over the batch's sundries, times loss_scale / batch_size
    m = ml[sel]
    mask_loss = (F.binary_cross_entropy_with_logits(m, torch.zeros_like(m), reduction='none') * hole_r[sel.nonzero()[:, 0], 0]).sum((-2, -1)) / (h * w)
    ce = F.cross_entropy(cl[sel], torch.full((len(m),), cl.shape[-1] - 1), reduction='none')
    prob_loss = ce * (m > 0).flatten(1).sum(-1) / (h * w)
    # EFC (remove_loss.py, use_crop false, mean_pool): entity logits bilinear to the image size, > 0; mean over images
    efc = np.mean([_official_efc_image(out.features[b].double().numpy(),
                                       (F.interpolate(ents[b][None], size=(32, 32), mode='bilinear') > 0)[0].numpy(),
                                       hole[b, 0].numpy()) for b in range(B)])
    ours = erasure_losses(out, hole, scale=0.5, object_prob='first')
    assert ours['ss_mask'].item() == pytest.approx(mask_loss.sum().item() * 0.5 / B, rel=1e-5)
    assert ours['ss_prob'].item() == pytest.approx(prob_loss.sum().item() * 0.5 / B, rel=1e-5)
    assert ours['efc'].item() == pytest.approx(efc, rel=1e-5, abs=1e-6)


def test_official_and_first_versions_differ_somewhere():
    "The kept alternatives are real alternatives: on random cases they give other values."
    d_w = d_m = 0.
    for seed in range(8):
        out, hole = _random_case(seed)
        base = erasure_losses(out, hole, scale=0.5, object_prob='first')['efc'].item()
        d_w = max(d_w, abs(base - erasure_losses(out, hole, scale=0.5, object_prob='first', weighting='entity')['efc'].item()))
        d_m = max(d_m, abs(base - erasure_losses(out, hole, scale=0.5, object_prob='first', entity_masks='bool')['efc'].item()))
    assert d_w > 1e-3 and d_m > 1e-3


@pytest.mark.parametrize('seed', range(4))
def test_entities_with_teacher_equal_the_official_code(seed):
    student, hole = _random_case(seed)
    teacher, _ = _random_case(seed + 100)
    s_ents = entities_from_predictions(student.class_logits, student.mask_logits, hole, object_prob='first')
    ours = entities_with_teacher(s_ents, teacher, hole, object_prob='first')
    t_ents, t_sundry, _, _ = _official_entities(teacher.class_logits, teacher.mask_logits, hole, ios_thres=0.85)
    for b in range(2):
        s_img = F.interpolate(s_ents[b][None], size=(32, 32), mode='bilinear') > 0
        t_mars = F.interpolate(t_sundry[b][None, None], size=(32, 32), mode='bilinear') > 0
        t_img = F.interpolate(t_ents[b][None], size=(32, 32), mode='bilinear') > 0
        assert torch.equal(ours[b], torch.cat([s_img & t_mars, t_img], dim=1)[0])


@pytest.mark.parametrize('seed', range(4))
def test_sundry_region_equals_the_official_code(seed):
    out, hole = _random_case(seed)
    _, t_sundry, _, _ = _official_entities(out.class_logits, out.mask_logits, hole, ios_thres=0.85)
    # flash_distill.py: bilinear to the image size, sigmoid > 0.1
    expect = (F.interpolate(t_sundry[:, None], size=(32, 32), mode='bilinear').sigmoid() > 0.1).float()
    assert torch.equal(sundry_region(out, hole, (32, 32), object_prob='first'), expect)


def test_erasure_losses_scale_is_required_and_divides_by_batch():
    seg = PrototypeSegmenter(torch.tensor([[.9, .1, .9], [0., .6, 0.]]), margin=0.5)
    img = torch.zeros(1, 3, 64, 64); img[:, 1] = 0.6
    img[..., 24:32, 24:32] = torch.tensor([.9, .1, .9])[:, None, None]
    hole = torch.zeros(1, 1, 64, 64); hole[..., 16:48, 16:48] = 1
    o = seg(img)
    with pytest.raises(TypeError, match='scale'): erasure_losses(o, hole)
    l1, l5 = erasure_losses(o, hole, scale=1.0), erasure_losses(o, hole, scale=0.5)
    assert l1['selection'].selected.tolist() == [[True, False]] and l1['ss'].item() > 0
    assert l5['ss'].item() == pytest.approx(0.5 * l1['ss'].item())
    assert l5['efc'].item() == pytest.approx(l1['efc'].item())                    # EFC: no scale in the official code
    assert erasure_losses(o, hole, scale=0.5, efc_scale=0.5)['efc'].item() == pytest.approx(0.5 * l1['efc'].item())
    # the same image twice plus one clean image: the sundry sums are divided by B = 3
    o3 = seg(torch.cat([img, img, torch.full_like(img, 0.0) + torch.tensor([0., .6, 0.])[:, None, None]]))
    l3 = erasure_losses(o3, hole.repeat(3, 1, 1, 1), scale=0.5)
    assert l3['ss'].item() == pytest.approx(2 / 3 * l5['ss'].item(), rel=1e-5)
    assert l5['ss'].item() == pytest.approx(sundry_suppression_loss(o.class_logits, o.mask_logits, hole, scale=0.5).loss.item())
    assert erasure_losses(o, hole, ss=False, scale=0.5)['ss'].item() == 0


def test_cap_gradient_measured_at_conv_out_weight():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.SiLU())
    conv_out = torch.nn.Conv2d(4, 2, 3, padding=1)
    y = conv_out(net(torch.randn(1, 2, 8, 8)))
    ref, aux = y.pow(2).mean(), 50 * y[..., :4, :4].abs().mean()
    capped, k = cap_gradient(aux, ref, wrt=conv_out.weight)
    g_ref, = torch.autograd.grad(ref, conv_out.weight, retain_graph=True)
    g_aux, = torch.autograd.grad(aux, conv_out.weight, retain_graph=True)
    assert k == pytest.approx((g_ref.norm() / 2 / g_aux.norm()).item(), rel=1e-5)
    g_cap, = torch.autograd.grad(capped, conv_out.weight, retain_graph=True)
    assert (g_cap.norm() / g_ref.norm()).item() == pytest.approx(0.5, rel=1e-5)
    # measured elsewhere (the output) the factor is another number: where it is measured matters
    assert cap_gradient(aux, ref, wrt=y)[1] != pytest.approx(k, rel=1e-3)
