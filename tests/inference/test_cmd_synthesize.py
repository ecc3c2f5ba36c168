"""``medm2g synthesize``: composable multi-contrast conditioning, grid checks and --register."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from infer_helpers import oblique_nifti, sha256

from medm2g_cli.main import run

STEPS = ["--steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def t1_t2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, np.ndarray]:
    import nibabel as nib

    d = tmp_path_factory.mktemp("syn")
    t1, aff = oblique_nifti(d / "t1.nii.gz")
    img = nib.load(str(t1))
    data = np.asarray(img.dataobj)
    t2 = d / "t2.nii.gz"
    nib.save(nib.Nifti1Image((data.max() - data).astype(np.int16), aff), str(t2))  # inverted contrast
    shifted = aff.copy()
    shifted[:3, 3] += [2.0, -1.0, 1.5]  # same anatomy, another grid position
    t2_moved = d / "t2_moved.nii.gz"
    nib.save(nib.Nifti1Image((data.max() - data).astype(np.int16), shifted), str(t2_moved))
    return t1, t2, t2_moved, aff


def test_t1_t2_to_pd_on_first_grid(tmp_path: Path, t1_t2: tuple[Path, Path, Path, np.ndarray],
                                   tiny_weights: Path) -> None:
    import nibabel as nib

    t1, t2, _, aff = t1_t2
    before = (sha256(t1), sha256(t2))
    out = tmp_path / "pd.nii.gz"
    run(["synthesize", "-i", f"t1:0.7={t1}", "-i", f"t2:0.3={t2}", "--target", "pd", "-o", str(out),
         "--weights", str(tiny_weights), *STEPS])
    assert (sha256(t1), sha256(t2)) == before
    img = nib.load(str(out))
    assert img.shape == nib.load(str(t1)).shape
    np.testing.assert_allclose(img.get_sform(), aff, atol=1e-5)
    np.testing.assert_allclose(img.get_qform(), aff, atol=1e-4)
    rep = json.loads((tmp_path / "pd_run.json").read_text())
    assert [s["weight"] for s in rep["inputs_spec"]] == [0.7, 0.3]
    # the weights change the conditioning, so the output
    out2 = tmp_path / "pd2.nii.gz"
    run(["synthesize", "-i", f"t1:0.1={t1}", "-i", f"t2:0.9={t2}", "--target", "pd", "-o", str(out2),
         "--weights", str(tiny_weights), *STEPS])
    assert not np.array_equal(img.get_fdata(), nib.load(str(out2)).get_fdata())


def test_other_grid_refused_then_registered(tmp_path: Path, t1_t2: tuple[Path, Path, Path, np.ndarray],
                                            tiny_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import nibabel as nib

    t1, _, t2_moved, aff = t1_t2
    out = tmp_path / "pd.nii.gz"
    args = ["synthesize", "-i", f"t1={t1}", "-i", f"t2={t2_moved}", "--target", "pd", "-o", str(out),
            "--weights", str(tiny_weights), *STEPS]
    with pytest.raises(SystemExit) as exc:
        run(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--register" in err[0]
    assert not out.exists()
    run([*args, "--register"])
    img = nib.load(str(out))
    np.testing.assert_allclose(img.get_sform(), aff, atol=1e-5)
    assert json.loads((tmp_path / "pd_run.json").read_text())["registration"][0]["input"] == "t2"


def test_bad_specs(tmp_path: Path, t1_t2: tuple[Path, Path, Path, np.ndarray], tiny_weights: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    t1 = t1_t2[0]
    for args, needle in (
        (["-i", str(t1), "--target", "pd"], "NAME=PATH"),
        (["-i", f"t1={t1}", "--target", "t1"], "also an input"),
        (["-i", f"xray={t1}", "--target", "pd"], "not a volume modality"),
        (["-i", f"t1={t1}", "-i", f"t1={t1}", "--target", "pd"], "twice"),
    ):
        with pytest.raises(SystemExit) as exc:
            run(["synthesize", *args, "-o", str(tmp_path / "o.nii.gz"), "--weights", str(tiny_weights)])
        assert exc.value.code == 2
        assert needle in capsys.readouterr().err
