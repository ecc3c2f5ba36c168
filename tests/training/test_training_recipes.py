"""The demo-weights recipes (examples/demo_weights/: one base plus per-stage files joined by ``extends:``)
configure exactly the runs the nine stand-alone files they replaced configured."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from medm2g_cli.training import config

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "examples" / "demo_weights"
BEFORE = "df9efd5"  # the last commit with examples/demo_weights*.yaml as stand-alone files
OLD_FILES = {
    "pretrain": "demo_weights.yaml", "hires": "demo_weights_hires.yaml", "text": "demo_weights_text.yaml",
    "chest": "demo_weights_chest.yaml", "brain": "demo_weights_brain.yaml",
    "brainct_vae": "demo_weights_brainct_vae.yaml", "brainall": "demo_weights_brainall.yaml",
    "ctv": "demo_weights_ctv.yaml", "decoders": "demo_weights_decoders.yaml",
}


def _old(name: str) -> dict:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git history of the repository")
    proc = subprocess.run(["git", "show", f"{BEFORE}:examples/{name}"], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"commit {BEFORE} is not in this checkout ({proc.stderr.strip()[:80]})")
    return yaml.safe_load(proc.stdout)


def test_every_recipe_is_listed() -> None:
    assert sorted(p.stem for p in RECIPES.glob("*.yaml")) == sorted([*OLD_FILES, "base"])


@pytest.mark.parametrize("stage", sorted(OLD_FILES))
def test_recipe_resolves_to_the_old_stand_alone_file(stage: str) -> None:
    new = config.build_config(RECIPES / f"{stage}.yaml")
    old = config.build_config(_old(OLD_FILES[stage]))
    assert new == old
    # and, key by key, the merged file states every value the old file stated
    merged = config.load_config_file(RECIPES / f"{stage}.yaml")
    for section, values in _old(OLD_FILES[stage]).items():
        if isinstance(values, dict):
            assert {k: merged[section][k] for k in values} == values, section
        else:
            assert merged[section] == values, section
