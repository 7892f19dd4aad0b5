"""The statistics behind the claims page: the paired bootstrap against hand-computable cases, the verdict rules on
intervals, the random-feature rule, the power calculation, and `--retrain` rebuilding its command itself."""
import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from erase_core.core import InputError
from erase_core.experiments import claims as C
from erase_core.experiments import tables as T


def test_constant_difference_gives_a_zero_width_interval():
    b = C.paired_bootstrap(np.full(37, 0.25), np.full(37, 0.5))
    assert b == dict(estimate=-0.25, lo=-0.25, hi=-0.25, n=37)
    r = C.paired_bootstrap(np.full(10, 3.0), np.full(10, 1.5), stat='ratio')
    assert r['estimate'] == r['lo'] == r['hi'] == 2.0


def test_normal_differences_match_the_analytic_interval():
    rng = np.random.default_rng(7)
    n, sigma = 900, 1.5
    shared = rng.normal(20, 5, n)                       # a per-image part both methods share: pairing removes it
    a, b = shared + rng.normal(0.2, sigma, n), shared
    d = a - b; half = NormalDist().inv_cdf(0.975) * d.std() / math.sqrt(n)
    bt = C.paired_bootstrap(a, b, n_boot=20_000)
    assert bt['estimate'] == pytest.approx(d.mean())
    assert bt['lo'] == pytest.approx(d.mean() - half, abs=0.03 * half) and bt['hi'] == pytest.approx(d.mean() + half, abs=0.03 * half)
    unpaired_half = NormalDist().inv_cdf(0.975) * math.sqrt(a.var() + b.var()) / math.sqrt(n)
    assert bt['hi'] - bt['lo'] < 0.5 * 2 * unpaired_half             # far narrower than if the images were not paired


def test_bootstrap_is_seeded_chunked_and_drops_missing_pairs():
    rng = np.random.default_rng(0); a, b = rng.random(50), rng.random(50)
    assert C.paired_bootstrap(a, b) == C.paired_bootstrap(a, b)
    assert C.paired_bootstrap(a, b, seed=1) != C.paired_bootstrap(a, b)
    a2 = np.r_[a, np.nan]; b2 = np.r_[b, 0.3]
    assert C.paired_bootstrap(a2, b2) == C.paired_bootstrap(a, b)
    big = C.paired_bootstrap(rng.random(5000), rng.random(5000), n_boot=2000)    # more than one chunk of resamples
    assert big['lo'] < big['estimate'] < big['hi'] and big['n'] == 5000


@pytest.mark.parametrize('args,kw,match', [
    (([1, 2], [1]), {}, 'one length'), (([[1]], [[1]]), {}, '1-d'), (([1], [1]), dict(stat='mean'), 'stat'),
    (([1], [1]), dict(level=1.5), 'level'), (([1], [1]), dict(n_boot=0), 'n_boot'), (([np.nan], [1.0]), {}, 'no image'),
])
def test_bootstrap_bad_input(args, kw, match):
    with pytest.raises(InputError, match=match): C.paired_bootstrap(*args, **kw)


def test_ratio_edge_cases():
    assert C.paired_bootstrap([0, 0, 0], [0, 0, 0], 'ratio')['estimate'] == 1.0       # no sundry before or after: no change
    r = C.paired_bootstrap([1, 0, 0, 0], [0, 0, 0, 0], 'ratio')
    assert r['estimate'] == math.inf and r['lo'] == 1.0


def test_verdict_rules_on_intervals():
    assert C.side(0.01, 0.2) == 'holds' and C.side(-0.2, -0.01) == 'does not hold' and C.side(-0.1, 0.1) == 'unresolved'
    assert C.verdict_factor(2.6, 10, 6.7) == 'holds' and C.verdict_factor(1.1, 10, 6.7) == 'partly'
    assert C.verdict_factor(0.2, 2.0, 6.7) == 'does not hold' and C.verdict_factor(0.5, 5, 6.7) == 'unresolved'
    assert C.combine(['holds', 'holds']) == 'holds' and C.combine(['holds', 'unresolved']) == 'partly'
    assert C.combine(['unresolved', 'does not hold']) == 'does not hold' and C.combine([]) == 'unresolved'


def test_random_feature_metrics_are_never_verdicts(tmp_path):
    "A claim on LPIPS from a random backbone is 'not testable at toy scale' even when every number goes the paper's way."
    rows, per = [], []
    for m, x in (('flashclear-abl-IV', 0.01), ('flashclear-abl-III', 0.02)):
        rows.append(dict(table='flashclear_table2b', scale='toy', method=m, dataset='ober_test', status='measured',
                         lpips=x, lpips_local=2 * x, lpips_extractor='lpips-alex(random backbone)'))
        per += [dict(table='flashclear_table2b', dataset='ober_test', method=m, image=str(i), metric=k, value=v * (1 + 0.01 * i),
                     scale='toy', extractor='lpips-alex(random backbone)') for i in range(30) for k, v in (('lpips', x), ('lpips_local', 2 * x))]
    pd.DataFrame(rows).to_csv(tmp_path / 'flashclear_table2b.csv', index=False)
    (tmp_path / 'per_image').mkdir(); pd.DataFrame(per).to_csv(tmp_path / 'per_image' / 'flashclear_table2b.csv', index=False)
    v = C.check_claims(tmp_path).set_index('claim')
    rad = next(c.text for c in C.CLAIMS if c.text.startswith('RAD beats'))
    assert v.verdict[rad] == 'not testable at toy scale' and v.numbers[rad].count('[') == 2
    # the same rows with a trained extractor: the rule turns itself off
    pd.DataFrame(rows).assign(lpips_extractor='lpips-toy(trained on the toy world)').to_csv(tmp_path / 'flashclear_table2b.csv', index=False)
    assert C.check_claims(tmp_path).set_index('claim').verdict[rad] == 'holds'


def test_images_needed_by_hand():
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    x = np.r_[np.ones(20), np.zeros(80)]; y = np.zeros(100)           # MSN 0.2 before, 0 after; the paper says 4x
    p = C.images_needed(x, y, 4.0)
    assert p['delta'] == pytest.approx(0.1) and p['sd'] == pytest.approx(x.std(ddof=1))
    assert p['n'] == math.ceil((z * x.std(ddof=1) / 0.1) ** 2) and p['n_pilot'] == 100
    assert C.images_needed(x + 30, y + 30, 2.0, kind='db')['delta'] == 1.0
    for bad in [dict(effect=0.5), dict(effect=2.0, kind='percent')]:
        with pytest.raises(InputError): C.images_needed(x, y, **bad)
    with pytest.raises(InputError, match='at least 2'): C.images_needed([1.0], [0.0], 2.0)


def test_retrain_rebuilds_its_command_and_never_runs_the_manifest_string():
    planted = 'python -c "import os; os.system(\'touch /tmp/pwned\')"'
    class _Ck:
        def manifest(self):
            return {'yoeo-joint-d1': dict(recipe='yoeo-joint', params={'d2': False, 'ss_on_paired': True}, command=planted),
                    'flashclear-abl-I': dict(recipe='flashclear', params={'ablation': 'I'}, command=planted),
                    'yoeo-teacher': dict(recipe='yoeo-teacher', params={}, command=planted),
                    'vae': dict(command=planted), 'bad': dict(recipe='flashclear', params={'ablation': '$(id)'}, command=planted),
                    'odd': dict(recipe='../../x', command=planted)}
    ran = []
    T.retrain_checkpoints(['yoeo-joint-d1', 'flashclear-abl-I', 'yoeo-teacher', 'vae'], _Ck(), run=ran.append)
    assert ran[0] == ['toy-vae', '--device', 'cpu'] and ran[1][:2] == ['train', 'yoeo-teacher']      # what later stages start from, first
    assert ['train', 'yoeo-joint', '--scale', 'toy', '--out', 'runs/toy/yoeo-joint-d1', '--publish', 'yoeo-joint-d1', '--quiet',
            '--set', 'd2=False', '--set', 'ss_on_paired=True'] in ran
    assert ran[-1][-2:] == ['--set', "ablation='I'"] and not any(planted in ' '.join(a) for a in ran)
    for names, match in [(['bad'], 'not a plain setting'), (['odd'], 'no known toy recipe'), (['never'], 'not in the manifest'),
                         (['yoeo-teacher', 'bad'], 'not a plain setting')]:
        before = len(ran)
        with pytest.raises(InputError, match=match): T.retrain_checkpoints(names, _Ck(), run=ran.append)
        assert len(ran) == before                                            # every entry checked before anything runs
    with pytest.raises(InputError, match='not a checkpoint name'): T.retrain_argv('../../x', dict(recipe='flashclear'), recipes={'flashclear'})


def test_rebuilt_retrain_arguments_parse_as_the_cli_parses_them():
    from erase_core.cli import build_parser, _parse_sets
    argv = T.retrain_argv('yoeo-joint-600', dict(recipe='yoeo-joint', params={'steps': 600}), recipes={'yoeo-joint'})
    a = build_parser().parse_args(argv)
    assert a.recipe == 'yoeo-joint' and a.publish == 'yoeo-joint-600' and _parse_sets(a.set) == {'steps': 600}
    a = build_parser().parse_args(T.retrain_argv('flashclear-abl-II', dict(recipe='flashclear', params={'ablation': 'II'}), recipes={'flashclear'}))
    assert _parse_sets(a.set) == {'ablation': 'II'}
