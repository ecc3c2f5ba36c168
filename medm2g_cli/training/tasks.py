"""The five fine-tuning task presets (supplement section C), all overridable.

Numbers are the supplement's: batch sizes, learning rates, Adam betas, plateau decay (x0.1 when the
validation loss plateaus after an epoch) and maximum report lengths. Where the supplement gives a
value per dataset the preset keeps the table and :func:`resolve_task` picks it from the prepared
dataset's name.
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
    flows: tuple[str, ...] = ()  # cross-guided flows trained (MRI synthesis, MRI-CT translation)
    batch_size: int = 16
    lr: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    plateau_factor: float | None = None  # lr *= factor when validation loss plateaus after an epoch
    plateau_patience: int = 0
    max_report_length: int | None = None
    beta_start: float | None = None  # None: the model's own schedule (Table A3)
    beta_end: float | None = None
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
        stage="multiflow",
        targets=("mri",),
        flows=("t1-t2", "pd-t1", "pd-t2"),
        batch_size=8,
        lr=9.6e-5,
        beta_start=1e-4,  # "beta_1 = 10e-4": read as 1e-4 (the DDPM value) — 10e-4 would be 1e-3
        beta_end=0.02,
        per_dataset={
            "brats": {"flows": ("flair-t1", "t1-t1ce", "t1-t2", "flair-t2", "t1ce-t2")},
            "ixi": {"flows": ("t1-t2", "pd-t1", "pd-t2")},
        },
        source="supplement C.3",
    ),
    "mri-ct-translation": TaskPreset(
        name="mri-ct-translation",
        description="MRI <-> CT translation (Gold Atlas male pelvis)",
        stage="multiflow",
        targets=("ct", "mri"),
        flows=("ct-mri",),
        batch_size=64,
        lr=9.6e-5,
        source="supplement C.4 (batch 64; lr not given, MRI synthesis value used)",
    ),
    "xray-generation": TaskPreset(
        name="xray-generation",
        description="report -> chest X-ray (MIMIC-CXR, ChestX-ray14)",
        stage="diffusion",
        targets=("xray",),
        flows=(),
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


def resolve_task(name: str, dataset_name: str | None = None, **overrides: Any) -> TaskPreset:
    """The task preset with the dataset's values applied, then the user's overrides (None ignored)."""
    task = get_task(name)
    if dataset_name:
        key = dataset_name.lower().replace("_", "-")
        for ds, values in task.per_dataset.items():
            if key.startswith(ds) or ds in key:
                task = replace(task, **values)
                break
    clean = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(clean) - set(TaskPreset.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown task setting(s): {', '.join(sorted(unknown))}", "check the option names")
    if "flows" in clean and isinstance(clean["flows"], str):
        clean["flows"] = tuple(s.strip() for s in clean["flows"].split(",") if s.strip())
    return replace(task, **clean)
