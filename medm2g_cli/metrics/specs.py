"""What ``medm2g eval`` measures per dataset and task, and so what ``medm2g finetune`` trains.

One table (:data:`EVAL_SPECS`, plus :data:`MORE_SPECS` for the extra directions a dataset reports)
is read by both the evaluation driver (:mod:`medm2g_cli.metrics.evaluate_model`) and the fine-tuning
presets (:func:`medm2g_cli.training.tasks.resolve_task`), so a fine-tuning task trains exactly the
conditioning its evaluation uses. Kept free of numpy/torch imports: training plans read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class EvalSpec:
    """What ``medm2g eval`` runs for a dataset/task: target, sources, metric kind, table setting."""

    target: str
    sources: tuple[str, ...]
    kind: str  # "image" (PSNR/SSIM[/MAE]), "text" (BLEU...), "fid"
    setting: str
    mask: str = "none"

    @property
    def needed(self) -> tuple[str, ...]:
        """Every key a sample must hold: the sources and the target."""
        return (*self.sources, self.target)

    @property
    def pair(self) -> str:
        """The training part ``target<src+src`` of this direction (sources in sorted order)."""
        return f"{self.target}<{'+'.join(sorted(self.sources))}"


EVAL_SPECS: dict[tuple[str, str], EvalSpec] = {
    ("ixi", "mri-synthesis"): EvalSpec("pd", ("t2", "t1"), "image", "T2+T1→PD", "brain"),
    ("brats2020", "mri-synthesis"): EvalSpec("t1ce", ("t2", "t1", "flair"), "image", "T2+T1+FLAIR→T1ce", "brain"),
    ("gold-atlas-pelvis", "mri-ct-translation"): EvalSpec("ct", ("t2",), "image", "T2→CT", "body"),
    ("mimic-cxr", "report-generation"): EvalSpec("text", ("xray",), "text", "X-ray→report"),
    ("iu-xray", "report-generation"): EvalSpec("text", ("xray",), "text", "X-ray→report"),
    ("mimic-cxr", "xray-generation"): EvalSpec("xray", ("text",), "fid", "report→X-ray"),
    ("chestxray14", "image-generation"): EvalSpec("xray", ("text",), "fid", "text→X-ray"),
    ("acdc", "image-generation"): EvalSpec("mri", ("text",), "fid", "text→MRI"),
    ("sliver07", "image-generation"): EvalSpec("ct", ("text",), "fid", "text→CT"),
}
"""Default direction per dataset/task: the setting the supplement reports (Tables A4-A7)."""

MORE_SPECS: dict[tuple[str, str], tuple[EvalSpec, ...]] = {
    # Table A4 reports BraTS twice: ->T1ce (the default above) and ->FLAIR (``eval --target flair``).
    ("brats2020", "mri-synthesis"): (EvalSpec("flair", ("t2", "t1ce", "t1"), "image", "T2+T1ce+T1→FLAIR", "brain"),),
}
"""Further directions of a dataset/task, selected with ``medm2g eval --target``."""

TRAINED_REVERSE: dict[str, bool] = {"mri-ct-translation": True}
"""Tasks whose fine-tuning also trains the reverse of every evaluated direction (``translate`` offers
both mri2ct and ct2mri; the pelvis table reports T2->CT)."""

TASK_ALIASES = {"report": "report-generation", "mri": "mri-synthesis", "translation": "mri-ct-translation",
                "mri-ct": "mri-ct-translation", "image": "image-generation", "xray": "xray-generation"}

KNOWN_DATASETS = tuple(dict.fromkeys(d for d, _ in EVAL_SPECS))


def dataset_key(name: str) -> str:
    """A dataset name in the table's spelling (``BraTS`` -> ``brats2020``)."""
    d = name.lower().replace("_", "-")
    return "brats2020" if d in ("brats", "brats-2020") else d


def task_key(task: str) -> str:
    """A task name in the table's spelling (aliases resolved)."""
    t = task.lower().replace("_", "-")
    return TASK_ALIASES.get(t, t)


def specs_for(dataset: str, task: str) -> tuple[EvalSpec, ...]:
    """Every direction evaluated for a dataset/task, the default first (empty if none)."""
    key = (dataset_key(dataset), task_key(task))
    if key not in EVAL_SPECS:
        return ()
    return (EVAL_SPECS[key], *MORE_SPECS.get(key, ()))


def get_spec(dataset: str, task: str, target: str | None = None) -> EvalSpec:
    """The evaluation spec of a dataset/task (``target`` picks another reported direction)."""
    specs = specs_for(dataset, task)
    if not specs:
        valid = ", ".join(f"{a}/{b}" for a, b in EVAL_SPECS)
        raise ConfigError(f"no evaluation defined for dataset '{dataset}' with task '{task}'", f"use one of: {valid}")
    if target is None:
        return specs[0]
    for s in specs:
        if s.target == target.lower():
            return s
    raise ConfigError(f"{dataset} {task} has no evaluation with target '{target}'",
                      f"use --target {' or '.join(s.target for s in specs)}")


def match_dataset(folder_name: str, task: str) -> str | None:
    """The known dataset a prepared folder is named after (``iu-xray-phantom`` -> ``iu-xray``), if it
    has an evaluation for ``task``."""
    fn = dataset_key(folder_name) if folder_name else ""
    t = task_key(task)
    for d, tk in EVAL_SPECS:
        if tk == t and fn and (fn == d or fn.startswith(d) or (d == "brats2020" and fn.startswith("brats"))):
            return d
    return None


def fitting_datasets(task: str, keys: set[str]) -> list[str]:
    """Datasets (in the supplement's order) whose default direction for ``task`` data with ``keys`` can feed."""
    t = task_key(task)
    return [d for (d, tk), sp in EVAL_SPECS.items() if tk == t and set(sp.needed) <= keys]


def resolve_dataset(dataset: str | None, task: str, folder_name: str, keys: set[str]
                    ) -> tuple[str, list[str]]:
    """The dataset whose protocol applies to a prepared folder, and notes.

    Given: that one. Not given: the known dataset the folder is named after, else the first dataset
    (in the supplement's order) whose default direction for ``task`` the folder's ``keys`` can feed
    (a phantom cohort is scored, and fine-tuned, as IXI T2+T1→PD).
    """
    notes: list[str] = []
    fn = dataset_key(folder_name) if folder_name else ""
    if dataset is None:
        named = match_dataset(folder_name, task)
        if named is not None:
            dataset = named
        else:
            fits = fitting_datasets(task, keys)
            if not fits:
                get_spec(fn or "?", task)  # raises the one-line "no evaluation defined" error
                raise DataError(f"the prepared folder '{folder_name}' has no data for task '{task}' (it has: "
                                f"{', '.join(sorted(keys)) or 'nothing'})", "prepare a dataset with the task's modalities")
            dataset = fits[0]
            notes.append(f"prepared folder '{folder_name}' scored with the {dataset} protocol "
                         "(its published numbers are for the real dataset)")
    d = dataset_key(dataset)
    get_spec(d, task)
    if fn and fn != d and not notes:
        notes.append(f"prepared folder is '{folder_name}', scored as {d} (published numbers are for the real {d})")
    return d, notes


def training_pairs(dataset: str, task: str) -> tuple[str, ...]:
    """The diffusion parts (``target<src+src``) fine-tuning ``task`` on ``dataset`` trains: every
    direction ``eval`` measures for it (and their reverses for translation tasks)."""
    pairs: list[str] = []
    for s in specs_for(dataset, task):
        pairs.append(s.pair)
        if TRAINED_REVERSE.get(task_key(task)) and len(s.sources) == 1:
            pairs.append(f"{s.sources[0]}<{s.target}")
    return tuple(dict.fromkeys(pairs))

