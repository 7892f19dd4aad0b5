"""`erase-core reproduce` and the table notebooks: the smoke reproduction of every table (what CI runs), byte-identical
reruns, paper-scale path checks, toy checkpoint checks, and the contracts of nbs/tables/."""
import hashlib, json, os, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
from erase_core.core import EraseCoreError, InputError, MissingFileError, ModelLoadError
from erase_core.experiments import tables as T
from erase_core.experiments.methods import load_method, telea_inpaint, checkpoint_status
from erase_core.experiments.claims import CLAIMS


def _cli(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', MPLBACKEND='Agg', HF_HUB_OFFLINE='1')
    return subprocess.run([str(Path(sys.executable).parent / 'erase-core'), *args], capture_output=True, text=True, env=env, cwd=ROOT, **kw)


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    "One smoke reproduction of every table through the CLI (the plumbing CI checks)."
    root = tmp_path_factory.mktemp('smoke')
    r = _cli('reproduce', '--scale', 'smoke', '--results-root', str(root / 'a'), '--data-root', str(root / 'sets'), timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return root


def test_smoke_reproduction_writes_every_table_with_provenance(smoke):
    out = smoke / 'a' / '_runs' / 'smoke'
    for name in T.TABLES:
        df = pd.read_csv(out / f'{name}.csv')
        assert (out / f'{name}.md').exists() and (out / f'{name}.ipynb').exists(), name   # table, and papermill's executed copy
        assert len(df) and set(T.PROVENANCE_COLUMNS) <= set(df.columns), name
        ours = df[df.scale == 'smoke']
        assert len(ours) and (ours.commit.nunique() == 1) and ours.torch.notna().all() and ours.diffusers.notna().all(), name
        measured = ours[ours.status.str.startswith('measured')]
        for k in ('lpips', 'fid'):          # a learned metric is never reported without its extractor
            if k in measured and measured[k].notna().any(): assert measured[f'{k}_extractor'].str.contains('random').all(), name
    readme = (out / 'README.md').read_text()
    assert readme.count('\n| ') >= len(CLAIMS) and 'Smoke scale' in readme
    t1 = pd.read_csv(out / 'flashclear_table1.csv').set_index(['method', 'dataset'])
    assert t1.loc[('telea', 'ober_test'), 'status'] == 'measured' and t1.loc[('telea', 'rord_val'), 'psnr'] > 0
    assert t1.loc[('omnipaint', 'rord_val'), 'status'] == 'paper only (not runnable here)' and t1.loc[('omnipaint', 'rord_val'), 'flops_T_paper'] == 2015.5
    assert pd.isna(t1.loc[('omnipaint', 'rord_val'), 'psnr'])                            # never a made-up number of ours
    assert (out / 'timing' / 'flashclear_table4.csv').exists()                          # timings kept apart from the tables


def test_two_runs_write_byte_identical_csvs(smoke):
    "A second run into a fresh results folder (fresh outputs cache: the models run again) writes the same bytes."
    names = ['compute_accounting', 'yoeo_table1', 'flashclear_table1']
    T.reproduce('smoke', names, results_root=smoke / 'b', data_root=smoke / 'sets', progress=False, log=lambda s: None)
    for n in names:
        a, b = (smoke / x / '_runs' / 'smoke' / f'{n}.csv' for x in ('a', 'b'))
        assert a.read_bytes() == b.read_bytes(), n
    for n in names[1:]:                                    # and the same per-image values, in the same order
        a, b = (smoke / x / '_runs' / 'smoke' / 'per_image' / f'{n}.csv' for x in ('a', 'b'))
        assert a.read_bytes() == b.read_bytes(), n


def test_paper_scale_names_every_missing_path_before_any_work(tmp_path):
    paths = tmp_path / 'paths.json'
    paths.write_text(json.dumps({'ober_parquet': str(tmp_path), 'objectclear': str(tmp_path / 'nope')}))
    r = _cli('reproduce', '--scale', 'paper', '--tables', 'flashclear_table1', '--paths', str(paths), '--results-root', str(tmp_path / 'res'))
    assert r.returncode == 2
    for k in ('objectclear', 'flashclear_lora', 'lpips_alexnet'): assert k in r.stderr
    assert 'ober_parquet' not in r.stderr and not (tmp_path / 'res').exists()     # nothing started
    bad = _cli('reproduce', '--scale', 'paper', '--paths', str(tmp_path / 'missing.json'))
    assert bad.returncode == 2 and 'paths file not found' in bad.stderr


class _FakeCheckpoints:
    "A stand-in for erase_core.training.checkpoints with one good, one changed and one missing checkpoint."
    def __init__(self, d):
        (d / 'good').write_bytes(b'good'); (d / 'changed').write_bytes(b'changed now')
        self.files = {n: d / n for n in ('good', 'changed', 'missing')}
        self.entries = {n: dict(sha256=hashlib.sha256(n.encode()).hexdigest()) for n in self.files}
        self.retrained = []
    def manifest(self): return dict(checkpoints=self.entries)
    def toy_checkpoint(self, name):
        p = self.files[name]
        if not p.exists(): raise ModelLoadError(f"{name}: file missing: {p}")
        if hashlib.sha256(p.read_bytes()).hexdigest() != self.entries[name]['sha256']: raise ModelLoadError(f"{name}: sha256 differs")
        return p
    def retrain(self, names): self.retrained += names


def test_toy_checkpoints_are_checked_and_never_used_when_changed(tmp_path, monkeypatch):
    ck = _FakeCheckpoints(tmp_path)
    assert [checkpoint_status(n, 'toy', ck).status for n in ('good', 'changed', 'missing', 'yoeo-joint')] == \
        ['ok', 'changed', 'missing', 'not trained yet']
    monkeypatch.setitem(T.TABLES, 'fake', dict(title='fake', depends=[], checkpoints=['good', 'changed', 'missing'], paper_paths=[]))
    assert T.check_toy_checkpoints(['fake'], ck) == {'good': 'ok', 'changed': 'changed', 'missing': 'missing'}
    with pytest.raises(MissingFileError, match='changed, missing'):       # --strict: reported by name, before any work
        T.reproduce('toy', ['fake'], strict=True, checkpoints_module=ck, progress=False, log=lambda s: None)
    T.retrain_checkpoints(['changed'], ck); assert ck.retrained == ['changed']
    m = load_method('flashclear', 'toy', checkpoints_module=ck)           # 'flashclear' is not in this manifest
    assert not m.ok and m.status == 'not trained yet'
    with pytest.raises(InputError, match='cannot run'): m([torch.rand(3, 16, 16)], [torch.ones(1, 16, 16)])


def test_table_notebooks_are_papermill_notebooks_that_nbdev_skips():
    import papermill as pm
    nbs = sorted((ROOT / 'nbs' / 'tables').glob('*.ipynb'))
    assert {p.stem for p in nbs} == set(T.TABLES)
    assert (ROOT / 'nbs' / 'tables' / '.notest').exists()                 # nbdev_test skips the folder
    for p in nbs:
        assert set(pm.inspect_notebook(str(p))) == {'scale', 'device', 'n_samples', 'seed', 'data_root', 'paths', 'results_root', 'commit'}
        nb = json.loads(p.read_text())
        assert nb['cells'][0]['cell_type'] == 'raw' and 'skip_exec: true' in ''.join(nb['cells'][0]['source'])
        src = '\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code')
        assert '#| default_exp' not in src and '#| export' not in src, p.name     # nbdev_export takes nothing from them
        assert all(not c.get('outputs') for c in nb['cells'] if c['cell_type'] == 'code'), p.name   # committed clean


def test_telea_and_methods_bad_input():
    with pytest.raises(InputError, match=r'image must be \(3, H, W\)'): telea_inpaint(torch.rand(1, 3, 8, 8), torch.ones(1, 8, 8))
    with pytest.raises(InputError, match='mask is'): telea_inpaint(torch.rand(3, 8, 8), torch.ones(1, 4, 4))
    with pytest.raises(InputError, match='unknown method'): load_method('nope', 'smoke')
    with pytest.raises(InputError, match='unknown table'): T.table_order(['nope'])
    with pytest.raises(InputError, match='scale'): T.TableRun('yoeo_table1', 'huge')


def test_paper_values_are_checked_against_the_text():
    papers = Path(os.environ.get('ERASE_CORE_PAPERS', '/work/shared/papers'))
    if not (papers / 'yoeo.txt').exists(): pytest.skip('papers text not here')
    import erase_core.experiments.paper_values as pv
    assert pv.check_against_text(papers) == 241
    orig = pv._FC_T5
    try:
        pv._FC_T5 = orig.replace('27.49', '27.94')
        with pytest.raises(InputError, match='27.94'): pv.check_against_text(papers)
    finally: pv._FC_T5 = orig


def test_tour_refuses_table_notebooks_and_keeps_outputs():
    from erase_core.experiments.tour import execute_tour, clean_keeps_outputs, tour_notebooks
    assert clean_keeps_outputs()
    assert all(p.parent.name == 'nbs' for p in tour_notebooks())
    with pytest.raises(InputError, match='reproduce'): execute_tour([ROOT / 'nbs' / 'tables' / 'yoeo_table1.ipynb'], progress=False)


def test_retrain_rebuilds_the_command_from_the_recipe():
    "The manifest's `command` string is never run: the command is rebuilt from the recipe and checked (tests/test_stats.py has more)."
    class _NoRetrain:
        def manifest(self): return {'yoeo-joint': dict(recipe='yoeo-joint', params={}, command='rm -rf ~ ; erase-core train x'), 'x': {}}
    ran = []
    T.retrain_checkpoints(['yoeo-joint'], _NoRetrain(), run=ran.append)
    assert ran == [['train', 'yoeo-joint', '--scale', 'toy', '--out', 'runs/toy/yoeo-joint', '--publish', 'yoeo-joint', '--quiet']]
    with pytest.raises(InputError, match='not in the manifest'): T.retrain_checkpoints(['x', 'never'], _NoRetrain(), run=ran.append)
