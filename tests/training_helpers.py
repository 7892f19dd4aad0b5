"""What the training test files share: one CLI training call, and a finished smoke run to build on."""
from erase_core.cli import main


def train(*args) -> int:
    "`erase-core train ARGS --quiet`; returns the exit code."
    return main(['train', *map(str, args), '--quiet'])


def smoke_run(tmp_path_factory, recipe: str, folder: str):
    "A finished smoke-scale run of `recipe` in a fresh temporary folder (for module-scoped fixtures)."
    out = tmp_path_factory.mktemp(folder) / recipe
    assert train(recipe, '--scale', 'smoke', '--out', out) == 0
    return out
