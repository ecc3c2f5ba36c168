"""Multi-flow selection and scheduling (method.md section 1.5; supplement E, F / Table A8).

A *flow* is a pair of modalities trained together with cross-guidance (``text-xray``,
``text-ct``, ``ct-mri``, MRI contrast pairs such as ``t1-t2``). The registry of valid flows is
:data:`medm2g_cli.modalities.FLOWS`. Two schedules:

* ``chain`` — CoDi's sequential chain: the steps are split into consecutive blocks, one per flow,
  in the order given; when a flow starts, the side it shares with an earlier flow stays frozen
  (text is trained with text-xray, then frozen for text-ct, ...).
* ``interleaved`` — Versatile-Diffusion-style multi-flow: the flows take turns step by step.

The flow for a step is a pure function of the step index, so a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import modalities
from ..errors import ConfigError

SCHEDULES = ("chain", "interleaved")
DEFAULT_FLOWS = ("text-xray", "text-ct", "ct-mri")
"""The three pre-training flows of Table A1, in the chain order of Table A8."""


@dataclass(frozen=True)
class Flow:
    """One paired flow: its name and the two sides as (modality, contrast or None)."""

    name: str
    a: tuple[str, str | None]
    b: tuple[str, str | None]

    @property
    def modalities(self) -> tuple[str, str]:
        """The two modalities (contrasts mapped to ``mri``)."""
        return self.a[0], self.b[0]


def parse_flows(spec: str | Sequence[str] | None) -> list[Flow]:
    """Parse ``"text-xray,ct-mri"`` (or a list) into flows; an unknown flow is refused.

    Reversed names (``xray-text``) are accepted and mapped to the registry's spelling.
    """
    if spec is None:
        names: list[str] = list(DEFAULT_FLOWS)
    elif isinstance(spec, str):
        names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    else:
        names = [str(s).strip().lower() for s in spec if str(s).strip()]
    if not names:
        raise ConfigError("no flow selected", f"pass --flows with one or more of: {', '.join(modalities.FLOWS)}")
    flows: list[Flow] = []
    for name in names:
        key = name
        if key not in modalities.FLOWS and "-" in key:
            left, right = key.split("-", 1)
            if f"{right}-{left}" in modalities.FLOWS:
                key = f"{right}-{left}"
        if key not in modalities.FLOWS:
            raise ConfigError(f"unknown flow '{name}'", f"use one of: {', '.join(modalities.FLOWS)}")
        if any(f.name == key for f in flows):
            raise ConfigError(f"flow '{key}' given twice", "list each flow once in --flows")
        a, b = modalities.FLOWS[key]
        flows.append(Flow(key, modalities.split_target(a), modalities.split_target(b)))
    return flows


def flow_modalities(flows: Sequence[Flow]) -> list[str]:
    """The modalities the flows need, in registry order."""
    needed = {m for f in flows for m in f.modalities}
    return [m for m in modalities.MODALITIES if m in needed]


@dataclass(frozen=True)
class FlowSchedule:
    """Which flow a step trains, and which modality sides are frozen at that step."""

    flows: tuple[Flow, ...]
    steps: int
    mode: str = "chain"

    def __post_init__(self) -> None:
        if self.mode not in SCHEDULES:
            raise ConfigError(f"unknown flow schedule '{self.mode}'", f"use one of: {', '.join(SCHEDULES)}")
        if not self.flows:
            raise ConfigError("no flow selected", "pass --flows")

    def index(self, step: int) -> int:
        """Index of the flow trained at ``step`` (0-based)."""
        n = len(self.flows)
        if self.mode == "interleaved":
            return step % n
        block = max(1, -(-self.steps // n))  # ceil: every flow gets a block, the last may be shorter
        return min(step // block, n - 1)

    def flow(self, step: int) -> Flow:
        """The flow trained at ``step``."""
        return self.flows[self.index(step)]

    def frozen_sides(self, step: int) -> set[str]:
        """Modalities whose cross-guidance parameters stay frozen at ``step``.

        In the chain, a modality already trained by an earlier flow is frozen (CoDi: text is frozen
        when text-audio follows text-image). Interleaved training updates both sides every time.
        """
        if self.mode == "interleaved":
            return set()
        i = self.index(step)
        earlier = {m for f in self.flows[:i] for m in f.modalities}
        current = set(self.flow(step).modalities)
        if len(current) == 1:  # an MRI contrast pair: both sides are the same branch, nothing to freeze
            return set()
        frozen = earlier & current
        # Never freeze both sides: a flow whose both sides were seen (e.g. t1-t2 after t1-pd) trains its second side.
        if frozen == current:
            frozen = {self.flow(step).modalities[0]}
        return frozen

    def blocks(self) -> list[tuple[str, int, int]]:
        """(flow, first step, last step + 1) per flow for the chain; for interleaved, all steps."""
        if self.mode == "interleaved":
            return [(f.name, 0, self.steps) for f in self.flows]
        out = []
        n = len(self.flows)
        block = max(1, -(-self.steps // n))
        for i, f in enumerate(self.flows):
            start = min(i * block, self.steps)
            end = self.steps if i == n - 1 else min((i + 1) * block, self.steps)
            out.append((f.name, start, end))
        return out


def added_parameters(flows: Sequence[Flow], count: Callable[[str], int]) -> list[dict[str, object]]:
    """Table A8-style report: parameters each flow adds, cumulatively over the chain.

    ``count(modality)`` returns the number of cross-guidance parameters (context encoder +
    connector cross-attention) of one modality. A modality's parameters are charged to the first
    flow that trains them, so the running total is the parameter cost of "single-flow",
    "two-flow", ... configurations.
    """
    seen: set[str] = set()
    total = 0
    rows: list[dict[str, object]] = []
    for f in flows:
        new = [m for m in dict.fromkeys(f.modalities) if m not in seen]
        added = sum(count(m) for m in new)
        seen.update(new)
        total += added
        rows.append({"flow": f.name, "new_modalities": new, "added_parameters": added, "cumulative_parameters": total})
    return rows
