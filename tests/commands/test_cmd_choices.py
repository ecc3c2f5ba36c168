"""Choice options as ``str`` Enums: ``--help`` lists them, the spellings accepted before are still
accepted, a bad value is one ``error:`` line (exit 2); the shared option groups give each command
the flags it had; the settings builder is keyword-only."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from medm2g_cli import choices, modalities
from medm2g_cli.config import SAMPLERS, SPACINGS
from medm2g_cli.errors import ConfigError
from medm2g_cli.inference.runtime import PRECISIONS
from medm2g_cli.main import app, run


def test_enums_are_the_sets_the_code_checks() -> None:
    from medm2g_cli.io.orientation import AXES

    for enum, source in choices.SOURCES.items():
        assert tuple(m.value for m in enum) == source, enum
    assert {m.value for m in choices.Precision} == set(PRECISIONS)
    assert {m.value for m in choices.Sampler} == set(SAMPLERS) and {m.value for m in choices.Spacing} == set(SPACINGS)
    assert {m.value for m in choices.Axis} == set(AXES)
    assert {m.value for m in choices.Direction} == set(modalities.translation_directions())


@pytest.mark.parametrize(("parse", "given", "expected"), [
    (choices.parse_device, "GPU", "cuda"), (choices.parse_device, " cuda:1 ", "cuda:1"), (choices.parse_device, "CPU", "cpu"),
    (choices.parse_output_format, "NII.GZ", "nifti"), (choices.parse_output_format, "Dicom", "dicom"),
    (choices.parse_image_format, "PNG", "png"), (choices.parse_direction, " MRI2CT ", "mri2ct"),
    (choices.parse_direction, "T1-T2", "t1-t2"), (choices.parse_sampler, "dpm++", "dpm++"),
    (choices.parse_spacing, "karras", "karras"), (choices.parse_precision, "bf16", "bf16"),
    (choices.parse_axis, "coronal", "coronal"), (choices.parse_decoding, "beam", "beam"),
])
def test_spellings_accepted_as_before(parse, given: str, expected: str) -> None:
    assert choices.value(parse(given)) == expected


@pytest.mark.parametrize(("parse", "given"), [
    (choices.parse_precision, "FP32"), (choices.parse_sampler, "DDIM"), (choices.parse_axis, "Axial"),
    (choices.parse_spacing, "cosine"), (choices.parse_device, "cuda:x"), (choices.parse_direction, "mri2pet"),
    (choices.parse_output_format, "png"), (choices.parse_image_format, "nifti"),
])
def test_spellings_refused_as_before(parse, given: str) -> None:
    with pytest.raises(ConfigError):
        parse(given)


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        run([*argv, "--help"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return " ".join(capsys.readouterr().out.split())


def test_help_lists_the_choices(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # wide enough that no choice list wraps inside the help table
    out = _help(["translate"], capsys).replace(" ", "").replace("│", "")
    for listed in ("<ddim|dpm++|sde-dpm++|unipc>", "<auto|fp32|bf16|fp16>", "<auto|cpu|cuda|mps>",
                   "<leading|linspace|trailing|karras>", "<axial|coronal|sagittal>", "<nifti|dicom|mha|nrrd>"):
        assert listed in out, listed
    assert "mri2ct" in out and "t1ce-flair" in out  # the direction argument lists the registry's directions
    assert "<greedy|beam>" in _help(["report"], capsys).replace(" ", "").replace("│", "")


@pytest.mark.parametrize("args", [
    ["--sampler", "euler"], ["--precision", "fp8"], ["--device", "tpu"], ["--axis", "oblique"],
    ["--format", "jpeg"], ["--spacing", "cosine"],
])
def test_bad_choice_is_one_error_line(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "t1.nii.gz"
    src.write_bytes(b"not read: the option fails first")
    with pytest.raises(SystemExit) as exc:
        run(["translate", "mri2ct", str(src), "-o", str(tmp_path / "o.nii.gz"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    assert len(err) == 1 and err[0].startswith("error: unknown ") and args[1] in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.nii.gz"]


def _flags(*path: str) -> set[str]:
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return {o for p in cmd.params for o in p.opts if o.startswith("--")}


SHARED = {"--weights", "--device", "--precision", "--steps", "--guidance", "--eta", "--sampler", "--seed",
          "--skip-verify"}
SCHEDULE = {"--guidance-stop", "--spacing"}


def test_shared_option_groups_give_each_command_its_flags() -> None:
    full = SHARED | SCHEDULE | {"--batch-size", "--compile"}
    assert _flags("translate") == full | {"--output", "--samples", "--preview", "--strict", "--continue", "--num-parts",
                                          "--part-id", "--axis", "--format", "--series", "--anonymize", "--overwrite",
                                          "--json"}
    assert _flags("synthesize") == full | {"--input", "--target", "--output", "--register", "--samples", "--preview",
                                           "--strict", "--axis", "--format", "--anonymize", "--overwrite", "--json"}
    assert _flags("dicom-node") == full | {"--port", "--task", "--forward", "--ae-title", "--bind", "--idle-timeout",
                                           "--work-dir", "--log-file", "--timeout", "--samples", "--axis"}
    for path in (("generate", "xray"), ("generate", "mri"), ("generate-xray",)):
        assert _flags(*path) == SHARED | {"--batch-size", "--prompt", "--output", "--num", "--format", "--size",
                                          "--overwrite", "--json"}, path
    assert _flags("generate", "xray+report") == SHARED | {"--prompt", "--output", "--num", "--format", "--decoding",
                                                          "--num-beams", "--overwrite", "--json"}
    assert _flags("report") == SHARED | {"--decoding", "--num-beams", "--output", "--overwrite", "--strict", "--json"}


def test_settings_builder_is_keyword_only_and_gives_plain_values() -> None:
    from medm2g_cli.commands import _infer_options as opts

    with pytest.raises(TypeError):
        opts.settings(None, "auto")  # type: ignore[misc]
    s = opts.settings(device="cuda:1", precision=choices.Precision.bf16, sampler=choices.Sampler.dpmpp,
                      spacing=choices.Spacing.karras, skip_verify=True, compile_=True, steps=3)
    assert (s.device, s.precision, s.sampler, s.spacing, s.verify, s.compile, s.steps) == \
        ("cuda:1", "bf16", "dpm++", "karras", False, True, 3)
    assert all(type(v) is str for v in (s.precision, s.sampler, s.spacing))  # run reports get plain strings
