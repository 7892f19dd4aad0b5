"""YOEO's distillation against the authors' code, on small cases worked out by hand from their rules: the phase of
given steps, the LSGAN discriminator loss, the discriminator head, the rows the sundry exclusion touches, and the
paper recipes' values."""
import math

import pytest
import torch

from erase_core.core import InputError
from erase_core.training.trainer import get_recipe
from erase_core.training.yoeo import (DiscriminatorHead, lsgan_losses, phase_of, sundry_exclusion_rows)


def test_phase_of_given_steps_counts_optimizer_steps():
    # The authors count 3,000 forward calls per phase, two calls per optimizer step: the generator's call of step s is
    # call 2s + 1, its phase the first boundary (3000, 6000, 9000, 12000) above it, the last phase past 12,000.
    by_hand = {0: 0, 1499: 0, 1500: 1, 2999: 1, 3000: 2, 4499: 2, 4500: 3, 6000: 3, 14_999: 3}
    assert {s: phase_of(s, 1500) for s in by_hand} == by_hand
    # the discriminator's call of step 1499 is call 3000: already the second phase (one step further)
    assert phase_of(1499 + 1, 1500) == 1 and phase_of(1498 + 1, 1500) == 0
    assert get_recipe('yoeo-distill', 'paper').params['phase_length'] == 1500
    # toy: the same shares of the run, a tenth of the 800 steps for each of the first three phases
    r = get_recipe('yoeo-distill', 'toy')
    assert [sum(phase_of(s, r.params['phase_length']) == k for s in range(r.steps)) for k in range(4)] == [80, 80, 80, 560]


def test_lsgan_losses_on_given_logits():
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4
    real = torch.tensor([[0.0], [math.log(3)]]); fake = torch.tensor([[0.0], [-math.log(3)]])
    # D: 0.5 * (mean((p_real - 1)^2) + mean(p_fake^2)) = 0.5 * ((1/4 + 1/16) / 2 + (1/4 + 1/16) / 2) = 5/32
    assert lsgan_losses(fake, real).item() == pytest.approx(5 / 32, abs=1e-7)
    assert lsgan_losses(fake, real, d_scale=1.0).item() == pytest.approx(10 / 32, abs=1e-7)   # the plain sum
    # G: mean((p_fake - 1)^2) = (1/4 + 9/16) / 2 = 13/32
    assert lsgan_losses(fake).item() == pytest.approx(13 / 32, abs=1e-7)
    assert get_recipe('yoeo-distill', 'paper').params['gan_d_scale'] == 0.5


def test_reference_head_layers_and_parameter_count():
    head = DiscriminatorHead(1280)
    layers = [(type(m).__name__, getattr(m, 'in_channels', None), getattr(m, 'out_channels', None), getattr(m, 'kernel_size', None),
               getattr(m, 'stride', None), getattr(m, 'bias', 0) is not None) for m in head.net]
    assert layers == [('Conv2d', 1280, 64, (3, 3), (1, 1), True), ('SiLU', None, None, None, None, True),
                      ('Conv2d', 64, 128, (4, 4), (2, 2), False), ('SiLU', None, None, None, None, True),
                      ('GroupNorm', None, None, None, None, True), ('AdaptiveAvgPool2d', None, None, None, None, True),
                      ('Conv2d', 128, 1, (4, 4), (1, 1), False), ('Flatten', None, None, None, None, True)]
    assert head.net[4].num_groups == 4 and head.net[5].output_size == 4
    # 1280*64*9 + 64 + 64*128*16 + 2*128 + 128*16 = 737,344 + 131,072 + 256 + 2,048
    assert sum(q.numel() for q in head.parameters()) == 870_720
    assert sum(q.numel() for q in DiscriminatorHead(128).parameters()) == 128 * 64 * 9 + 64 + 131_072 + 256 + 2_048   # the toy UNet
    for scale in ('toy', 'paper'):
        p = get_recipe('yoeo-distill', scale).params
        assert (p['disc_head'], p['disc_width'], p['disc_sample']) == ('reference', 64, 'fresh')


def test_rows_a_sundry_exclusion_touches():
    paired = torch.tensor([True, False, True, False, False])
    assert sundry_exclusion_rows(paired).tolist() == [False, True, False, True, True]          # the authors: unpaired rows only
    assert sundry_exclusion_rows(paired, 'all').tolist() == [True] * 5
    assert sundry_exclusion_rows(paired, 'none').tolist() == [False] * 5
    assert sundry_exclusion_rows(paired, True).tolist() == [True] * 5 and sundry_exclusion_rows(paired, False).tolist() == [False] * 5
    assert sundry_exclusion_rows(torch.ones(3, dtype=torch.bool)).sum() == 0                   # an all-paired batch: nothing
    for scale in ('smoke', 'toy', 'paper'):
        assert get_recipe('yoeo-joint', scale).params['exclude_teacher_sundries'] == 'unpaired'
    with pytest.raises(InputError, match="exclude_teacher_sundries must be one of"):
        sundry_exclusion_rows(paired, 'paired')


def test_bad_head_is_one_line():
    with pytest.raises(InputError, match="disc_head must be one of"):
        DiscriminatorHead(64, arch='patchgan')
