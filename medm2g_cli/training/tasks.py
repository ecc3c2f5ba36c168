"""The five fine-tuning task presets (supplement section C), all overridable.

Numbers are the supplement's: batch sizes, learning rates, Adam betas, plateau decay (x0.1 when the
validation loss plateaus after an epoch) and maximum report lengths. Where the supplement gives a
value per dataset the preset keeps the table and :func:`resolve_task` picks it from the prepared
dataset's name.

What a task trains is what ``medm2g eval`` measures for it: the diffusion parts (``target<src+src``)
come from :mod:`medm2g_cli.metrics.specs` (IXI: ``pd<t1+t2``; BraTS: ``t1ce<flair+t1+t2`` and
``flair<t1+t1ce+t2``; Gold Atlas: ``ct<t2`` and ``t2<ct``; reports: ``text<xray``; ...), each part
with the same multi-source conditioning (mixed prompts + context tokens or concat slots) as inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class TaskPreset:
    """Hyper-parameters of one fine-tuning task."""

    name: str
    description: str
    stage: str  # which training stage the task runs (see stages.STAGES)
    targets: tuple[str, ...]  # modalities whose diffusion branch is trained ("text" = report generation)
    flows: tuple[str, ...] = ()  # cross-guided flows, only when asked for (--flows: the multiflow stage)
    pairs: tuple[str, ...] = ()  # diffusion parts; resolve_task fills them from the evaluation specs
    batch_size: int = 16
    lr: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    plateau_factor: float | None = None  # lr *= factor when validation loss plateaus after an epoch
    plateau_patience: int = 0
    max_report_length: int | None = None
    beta_start: float | None = None  # None: the model's own schedule (Table A3)
    beta_end: float | None = None
    beta_schedule: str | None = None  # diffusers name of the schedule beta_start/beta_end define
    apply_schedule: bool = True  # False: the schedule above is the supplement's, recorded only (see the preset)
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view, written to the run config."""
        return asdict(self)


TASKS: dict[str, TaskPreset] = {
    "report-generation": TaskPreset(
        name="report-generation",
        description="X-ray -> report (MIMIC-CXR, IU X-ray)",
        stage="diffusion",
        targets=("text",),
        batch_size=16,
        lr=1e-3,
        max_report_length=45,
        per_dataset={
            "mimic-cxr": {"batch_size": 64, "max_report_length": 50},
            "iu-xray": {"batch_size": 16, "max_report_length": 45},
        },
        source="supplement C.1",
    ),
    "image-generation": TaskPreset(
        name="image-generation",
        description="text -> image (ChestX-ray14, SLIVER07 CT, ACDC MRI)",
        stage="diffusion",
        targets=("xray", "ct", "mri"),
        batch_size=16,
        lr=1e-3,
        plateau_factor=0.1,
        plateau_patience=0,
        source="supplement C.2",
    ),
    "mri-synthesis": TaskPreset(
        name="mri-synthesis",
        description="multi-contrast MRI synthesis (BraTS 2020, IXI)",
        stage="diffusion",
        targets=("mri",),
        batch_size=8,
        lr=9.6e-5,
        # C.3's schedule, recorded but NOT applied (apply_schedule=False): fine-tuning starts from the
        # MRI LDM, which Table A3 trains on 0.00085 -> 0.012 (scaled_linear); switching schedules re-maps
        # the noise level of every timestep the pre-trained denoiser learned, and here the schedule is
        # one per model folder, so the CT/X-ray/text branches of the fine-tuned folder would sample with
        # it too. C.3's "beta_1 = 10e-4" is itself ambiguous (1e-4, the DDPM value, or literally 1e-3).
        # To apply it: `model: {scheduler: {beta_start: 1.0e-4, beta_end: 0.02, beta_schedule: linear}}`
        # in the --config (README, Fidelity).
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        apply_schedule=False,
        source="supplement C.3",
    ),
    "mri-ct-translation": TaskPreset(
        name="mri-ct-translation",
        description="MRI <-> CT translation (Gold Atlas male pelvis)",
        stage="diffusion",
        targets=("ct", "mri"),
        batch_size=64,
        lr=9.6e-5,
        source="supplement C.4 (batch 64; lr not given, MRI synthesis value used)",
    ),
    "xray-generation": TaskPreset(
        name="xray-generation",
        description="report -> chest X-ray (MIMIC-CXR, ChestX-ray14)",
        stage="diffusion",
        targets=("xray",),
        batch_size=16,
        lr=1e-3,
        plateau_factor=0.1,
        source="supplement C.5",
    ),
}

ALIASES = {
    "report": "report-generation",
    "image": "image-generation",
    "mri": "mri-synthesis",
    "translation": "mri-ct-translation",
    "mri-ct": "mri-ct-translation",
    "xray": "xray-generation",
    "chest-xray-generation": "xray-generation",
}


def get_task(name: str) -> TaskPreset:
    """The preset called ``name`` (or an alias such as ``report``); unknown names are refused."""
    key = name.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in TASKS:
        raise ConfigError(f"unknown fine-tuning task '{name}'", f"use one of: {', '.join(TASKS)}")
    return TASKS[key]


def resolve_task(name: str, dataset_name: str | None = None, keys: set[str] | None = None,
                 **overrides: Any) -> TaskPreset:
    """The task preset with the dataset's values applied, then the user's overrides (None ignored).

    The dataset is the one ``medm2g eval`` would score the folder as: the known dataset its name
    starts with, else (given the folder's ``keys``) the first one the data can feed. Its evaluated
    directions become the task's ``pairs``; a folder named after no dataset trains every direction
    of every dataset its data can feed (phantom cohorts).
    """
    from ..metrics import specs

    task = get_task(name)
    named = specs.match_dataset(dataset_name or "", task.name)
    if named is not None:
        datasets = [named]
    elif keys is not None:
        datasets = specs.fitting_datasets(task.name, keys)
    else:
        datasets = []
    if not datasets:  # nothing known about the data: the task's first evaluated dataset
        datasets = [next(d for d, t in specs.EVAL_SPECS if t == task.name)]
    for ds, values in task.per_dataset.items():
        if datasets[0].startswith(ds):
            task = replace(task, **values)
            break
    pairs = tuple(dict.fromkeys(p for d in datasets for p in specs.training_pairs(d, task.name)))
    task = replace(task, pairs=pairs)
    clean = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(clean) - set(TaskPreset.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown task setting(s): {', '.join(sorted(unknown))}", "check the option names")
    for key in ("flows", "pairs"):
        if key in clean and isinstance(clean[key], str):
            clean[key] = tuple(s.strip() for s in clean[key].split(",") if s.strip())
    if clean.get("flows"):  # explicit flows: the cross-guided multiflow stage instead of the pairs
        clean.setdefault("stage", "multiflow")
    return replace(task, **clean)
