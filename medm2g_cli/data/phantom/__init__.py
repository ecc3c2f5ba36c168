"""The built-in digital phantom cohort: paired brain MRI/CT volumes and chest radiographs with ground truth.

Everything is generated offline and deterministically from a seed:

* :func:`generate_brain_subject` / :func:`write_brain_cohort` (MNI152 anatomy, T1/T2/PD/FLAIR/T1ce, CT, labels);
* :func:`generate_chest` / :func:`write_chest_cohort` (2-D radiographs with findings and reports);
* :func:`randomise_subject` / :class:`RandomiseConfig` (domain-randomised renderings of a brain subject).
"""

from __future__ import annotations

from .brain import BrainSubject, generate_brain_subject
from .chest import CHEST_FINDINGS, ChestSubject, findings_from_report, generate_chest
from .layouts import write_brain_cohort, write_chest_cohort
from .randomise import RandomiseConfig, randomise_subject

__all__ = [
    "CHEST_FINDINGS",
    "BrainSubject",
    "ChestSubject",
    "RandomiseConfig",
    "findings_from_report",
    "generate_brain_subject",
    "generate_chest",
    "randomise_subject",
    "write_brain_cohort",
    "write_chest_cohort",
]
