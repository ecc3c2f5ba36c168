"""The demo-weights recipes (examples/demo_weights/: one base plus per-stage files joined by ``extends:``)
configure exactly the runs the nine stand-alone files they replaced configured."""

from __future__ import annotations

import dataclasses
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


NEW_STAGES = ("pdv",)  # recipe files added after the split (no stand-alone counterpart)


def test_every_recipe_is_listed_and_run_by_the_script() -> None:
    assert sorted(p.stem for p in RECIPES.glob("*.yaml")) == sorted([*OLD_FILES, *NEW_STAGES, "base"])
    script = (REPO / "examples" / "train_demo_weights.sh").read_text()
    for stage in [*OLD_FILES, *NEW_STAGES]:
        assert f'"$CFG/{stage}.yaml"' in script, stage


def test_pdv_is_the_ctv_recipe_for_the_pd_diffuser() -> None:
    """Round 4 (issue 20): the PD diffuser fine-tuned into v-prediction exactly as ctv.yaml did for CT,
    on the same data, with only the branch, the pair and the seed changed."""
    pdv = config.build_config(RECIPES / "pdv.yaml")
    ctv = config.build_config(RECIPES / "ctv.yaml")
    assert pdv.model_overrides == {**ctv.model_overrides, "scheduler.v_prediction": ["ct", "mri"]}
    assert pdv.options == dataclasses.replace(ctv.options, targets=("mri",), pairs=("pd<t1+t2",))
    assert pdv.data == ctv.data and pdv.stages == ctv.stages
    assert pdv.loop == dataclasses.replace(ctv.loop, seed=pdv.loop.seed) and pdv.loop.seed != ctv.loop.seed


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


def test_card_is_what_the_shipped_weights_carry() -> None:
    """`make weights` writes examples/demo_weights/card.json (licence, intended use, recommended
    sampler settings) into the trained folder's medm2g.json: the shipped folder carries exactly it."""
    import json

    card = json.loads((RECIPES / "card.json").read_text())
    meta = json.loads((REPO / "weights" / "medm2g-demo" / "medm2g.json").read_text())
    assert {k: meta.get(k) for k in card if not k.startswith("_")} == {k: v for k, v in card.items() if not k.startswith("_")}
    assert set(card) - {"_comment"} == {"license", "intended_use", "sampling"}
