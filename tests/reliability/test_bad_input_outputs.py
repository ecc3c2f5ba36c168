"""More bad-input corpus cases: outputs that would overwrite inputs or a user's own folder, and batch
outputs that collide. Run through the corpus harness of ``test_bad_input_corpus`` (exit 2, one
``error:`` line, no traceback, input tree byte-identical, output listing unchanged).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rel_helpers import REPO, mri_volume
from test_bad_input_corpus import FAST, Case, _mri
from test_bad_input_corpus import test_bad_input as check_bad_input


def _user_folder(ctx: SimpleNamespace, where: Path) -> Path:
    mine = where / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    return mine


def _cohort(ctx: SimpleNamespace) -> Path:
    """A real phantom cohort, so without the check the command would go on to replace the folder."""
    from medm2g_cli.data.phantom.layouts import write_brain_cohort

    write_brain_cohort(ctx.d / "raw", 1)
    return ctx.d / "raw"


def _prepared_for_training(ctx: SimpleNamespace) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("prepared_fixture", REPO / "tests" / "training" / "prepared_fixture.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_prepared(ctx.d / "prepared", n=12, kinds=("mri",))


def prepare_into_parent_of_source(ctx):
    src = _cohort(ctx)
    return ["prepare", "phantom", str(src), "-o", str(ctx.d), "--overwrite"]


def prepare_into_user_folder(ctx):
    src = _cohort(ctx)
    return ["prepare", "phantom", str(src), "-o", str(_user_folder(ctx, ctx.out)), "--overwrite"]


def pretrain_into_data(ctx):
    root = _prepared_for_training(ctx)
    return ["pretrain", "--data", str(root), "-o", str(root), "--overwrite", "--preset", "tiny", "--flows", "t1-t2",
            "--steps", "1", "--cpu"]


def batch_into_input_folder(ctx):
    _mri(ctx, "a.nii.gz")
    _mri(ctx, "b.nii.gz")
    return ["translate", "t1-t2", str(ctx.d), "-o", str(ctx.d), "--overwrite", "--weights", str(ctx.w), *FAST]


def batch_same_names(ctx):
    for p in ("p1", "p2"):
        (ctx.d / p).mkdir()
        _mri(ctx, f"{p}/t1.nii.gz")
    (ctx.d / "cases.txt").write_text("p1/t1.nii.gz\np2/t1.nii.gz\n")
    return ["translate", "t1-t2", str(ctx.d / "cases.txt"), "-o", str(ctx.out / "batch"), "--weights", str(ctx.w), *FAST]


def batch_mhd_and_mha(ctx):
    import SimpleITK as sitk  # noqa: N813

    img = sitk.GetImageFromArray(np.transpose(mri_volume(), (2, 1, 0)))
    sitk.WriteImage(img, str(ctx.d / "a.mhd"))
    sitk.WriteImage(img, str(ctx.d / "a.mha"))
    return ["translate", "t1-t2", str(ctx.d), "-o", str(ctx.out / "batch"), "--weights", str(ctx.w), *FAST]


def convert_onto_input(ctx):
    t1 = _mri(ctx)
    return ["convert", str(t1), str(t1), "--overwrite"]


def convert_into_user_folder(ctx):
    return ["convert", str(_mri(ctx)), str(_user_folder(ctx, ctx.out)), "--format", "dicom", "--modality", "mri",
            "--overwrite"]


def synthesize_onto_input(ctx):
    t1, t2 = _mri(ctx, "t1.nii.gz"), _mri(ctx, "t2.nii.gz")
    return ["synthesize", "-i", f"t1={t1}", "-i", f"t2={t2}", "--target", "pd", "-o", str(t2), "--overwrite",
            "--weights", str(ctx.w), *FAST]


def register_onto_moving(ctx):
    fixed, moving = _mri(ctx, "f.nii.gz"), _mri(ctx, "m.nii.gz")
    return ["register", str(fixed), str(moving), "-o", str(moving), "--overwrite"]


OUTPUT_CASES: list[Case] = [
    Case("overwrite-prepare-parent-of-source", "outputs vs inputs", "prepare", prepare_into_parent_of_source,
         "contains the input"),
    Case("overwrite-prepare-user-folder", "outputs vs inputs", "prepare", prepare_into_user_folder, "medm2g did not write"),
    Case("overwrite-pretrain-into-data", "outputs vs inputs", "pretrain", pretrain_into_data, "is the input"),
    Case("overwrite-batch-into-input-folder", "outputs vs inputs", "translate", batch_into_input_folder,
         "inside the input"),
    Case("overwrite-convert-onto-input", "outputs vs inputs", "convert", convert_onto_input, "is the input"),
    Case("overwrite-convert-user-folder", "outputs vs inputs", "convert", convert_into_user_folder, "medm2g did not write"),
    Case("overwrite-synthesize-onto-input", "outputs vs inputs", "synthesize", synthesize_onto_input, "is the input"),
    Case("overwrite-register-onto-moving", "outputs vs inputs", "register", register_onto_moving, "is the input"),
    Case("batch-same-file-names", "batch collisions", "translate", batch_same_names, "would both write"),
    Case("batch-mhd-and-mha", "batch collisions", "translate", batch_mhd_and_mha, "would both write"),
]


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=[c.id for c in OUTPUT_CASES])
def test_output_case(case: Case, tmp_path: Path, rel_weights: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    check_bad_input(case, tmp_path, rel_weights, monkeypatch, capsys)
