"""The project's own contracts: README commands, CI, presets' parameter counts, the FLOPs accounting."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / 'README.md').read_text())


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one():
    cmds = _readme_commands()
    main, test = cmds[0], cmds[1]
    assert main.startswith('python3.11 -m venv .venv') and test.startswith('python3.11 -m venv .venv')
    assert 'run_all.sh' in test
    ci = (ROOT / '.ci' / 'run').read_text()
    assert test in ci.splitlines(), 'CI must run the README test command verbatim'
    # the README's first lines (after the title) are those two commands
    parts = (ROOT / 'README.md').read_text().split('```bash')
    assert '## ' not in parts[0] + parts[1], 'no section may come before the two commands'


def test_paper_parameter_counts():
    from erase_core.models.presets import build_unet, build_vae, n_params
    assert n_params(build_unet('sd15-inpaint', 'meta')) == 859_535_364
    assert n_params(build_unet('sdxl-inpaint', 'meta')) == 2_567_478_084
    assert abs(n_params(build_vae('sdxl-inpaint', 'meta')) / 83.65e6 - 1) < 0.001


def test_objectclear_63_6_tflops_within_one_percent():
    from erase_core.metrics.compute import erasure_flops
    r = erasure_flops('sdxl-inpaint', 512, 512, steps=20, guidance=True)
    assert r['unet_calls'] == 40
    assert abs(r['denoise_T'] / 63.6331 - 1) < 0.01


@pytest.mark.parametrize('steps,height,width,pad,paper', [(4, 512, 512, True, 8.6477), (2, 512, 512, True, 4.3238),
                                                          (4, 512, 912, False, 15.6)])
def test_flashclear_tflops_are_unmerged_lora_calls_within_one_percent(steps, height, width, pad, paper):
    """FlashClear's published FLOPs: the SDXL-inpainting UNet carrying an unmerged rank-256 LoRA (REFERENCE.md);
    RORD-Val's 15.6 T at 912x512 (shorter side resized to 512, sides multiples of 8, no padding)."""
    from erase_core.metrics.compute import erasure_flops
    r = erasure_flops('sdxl-inpaint', height, width, steps=steps, lora_rank=256, pad=pad)
    assert abs(r['denoise_T'] / paper - 1) < 0.01, r['denoise_T']
    assert abs(r['denoise_T'] / r['merged_T'] - 1.36) < 0.01      # merged, the LoRA costs nothing


def test_accounting_csv_matches_the_code():
    "results/compute_accounting.csv (the table `erase-core reproduce` writes) agrees with the code and with the papers' figures."
    import pandas as pd
    from erase_core.metrics.compute import paper_flops_table
    csv = pd.read_csv(ROOT / 'results' / 'compute_accounting.csv')
    csv = csv[csv.scale == 'paper (architecture only)'].reset_index(drop=True)   # the papers' architectures (toy rows follow)
    tab = paper_flops_table()
    assert list(csv.label) == list(tab.model)
    rel = lambda a, b: ((a / b) - 1).abs().max()          # the table rounds to 4 significant digits
    assert rel(csv.flops_T, tab.denoise_T) < 1e-3 and rel(csv.merged_T, tab.merged_T) < 1e-3
    got = (csv.flops_T_paper / csv.flops_T).dropna()
    assert len(got) == 4 and ((got - 1).abs() < 0.01).all(), got


def test_flops_scale_with_steps_and_guidance():
    from erase_core.metrics.compute import erasure_flops, unet_call_flops
    a = erasure_flops('tiny', 32, 32, steps=2)
    b = erasure_flops('tiny', 32, 32, steps=4)
    c = erasure_flops('tiny', 32, 32, steps=2, guidance=True)
    assert b['denoise_T'] == pytest.approx(2 * a['denoise_T']) and c['denoise_T'] == pytest.approx(2 * a['denoise_T'])
    assert a['total_T'] > a['denoise_T']
    # a hand count for one linear layer pins the convention (multiply-add = 2)
    import torch
    from erase_core.metrics.compute import count_flops
    assert count_flops(torch.nn.Linear(5, 7, bias=False), torch.zeros(2, 5))[0] == 2 * 2 * 5 * 7
    # attention is counted on the meta device: an attention-free call would scale linearly with pixels
    assert unet_call_flops('tiny', 64, 64) > 4 * unet_call_flops('tiny', 32, 32)


def test_readme_toy_demo_runs(tmp_path, monkeypatch, capsys):
    "The README's one-line toy demo, as written (the output redirected into a temporary folder), from the repository root."
    import shlex
    from erase_core.cli import main
    demo = [c for c in _readme_commands() if '--model toy:' in c and 'data/demo/' in c]
    assert len(demo) == 1 and '\n' not in demo[0], demo
    argv = shlex.split(demo[0])
    assert argv[0] == '.venv/bin/erase-core' and argv[1] == 'remove'
    i = argv.index('-o'); out = tmp_path / argv[i + 1]; argv[i + 1] = str(out)
    monkeypatch.chdir(ROOT)
    assert main(argv[1:]) == 0
    assert out.exists() and f"wrote {out}" in capsys.readouterr().out


def test_readme_documents_the_checkpoints_variable_and_root():
    text = (ROOT / 'README.md').read_text()
    assert 'ERASE_CORE_CHECKPOINTS' in text and 'root=' in text and 'toy:yoeo-joint' in text
