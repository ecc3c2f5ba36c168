"""The session every API entry point opens: settings, weights, device and (lazily) the model; plus
the volume helpers the entry points share (reading, output format, provenance text)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..choices import parse_output_format
from ..errors import ConfigError
from ..inference.provenance import run_report, split_name
from ..inference.runtime import (
    InferenceSettings,
    Log,
    auto_batch_size,
    autocast,
    autoencoder_dtype,
    check_branches,
    load_model,
    resolve_weights,
    select_device,
    weights_hash,
)
from ..inference.sampling import model_sampling
from ..io.atomic import check_output
from ..io.formats import VOLUME_FORMATS
from ..io.volume import Volume

if TYPE_CHECKING:
    from .model_cache import ModelCache

Progress = Callable[[int, int], None]


def nolog(_: str) -> None:
    """The default ``log``: say nothing."""
    return None


@dataclass
class Session:
    """The weights, device and (lazily loaded) model of one run."""

    settings: InferenceSettings
    weights: Path
    meta: dict[str, Any]
    log: Log = nolog
    device: Any = None
    model: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    target: str | None = None
    cache: ModelCache | None = None

    @classmethod
    def open(cls, settings: InferenceSettings, needed: Sequence[str], log: Log = nolog, *,
             cache: ModelCache | None = None) -> Session:
        """Validate settings, resolve the weights and check their branches (no model loaded yet).

        ``needed`` lists the input branches, then the output's (which picks the model's sampler
        settings, :mod:`medm2g_cli.inference.sampling`). With a ``cache``
        (:class:`~medm2g_cli.api.model_cache.ModelCache`) the model is reused across sessions while
        the weights folder and settings are unchanged; without one it is loaded per session."""
        settings.validate()
        weights = resolve_weights(settings.weights)
        meta = check_branches(weights, needed)
        model_sampling(meta, str(weights / "medm2g.json"))  # a bad "sampling" block stops here
        return cls(settings, weights, meta, log, target=needed[-1] if needed else None, cache=cache)

    def sampling(self) -> dict[str, Any]:
        """The model's ``sampling`` block as it applies to this session's output branch."""
        return model_sampling(self.meta, target=self.target)

    def sample_config(self) -> Any:
        """Sampler settings: flags, else the model's ``sampling`` block, else Table A3."""
        return self.settings.sample_config(model=self.sampling())

    def load(self) -> Any:
        """Select the device and load the model (once; from the session's cache when it holds it,
        which the timings record as ``model_reused``)."""
        if self.model is None:
            import torch

            torch.manual_seed(self.settings.seed)
            self.device = select_device(self.settings.device, self.log)
            t = time.perf_counter()

            def fresh() -> Any:
                return load_model(self.weights, self.device, verify=self.settings.verify,
                                  compile=self.settings.compile, channels_last=self.settings.channels_last,
                                  precision=self.settings.precision)

            reused = None
            if self.cache is None:
                self.model = fresh()
            else:
                self.model, reused = self.cache.load(self.weights, self.device, self.settings, fresh)
            self.timings["load_s"] = round(time.perf_counter() - t, 4)  # a reuse only fingerprints the folder
            if reused is not None:
                self.timings["model_reused"] = reused
        return self.model

    def autocast(self) -> Any:
        """Autocast context for the chosen precision on the chosen device."""
        return autocast(self.device, self.settings.precision, self.log)

    def batch_size(self, samples: int = 1) -> int:
        """``--batch-size`` or one chosen from free memory."""
        if self.settings.batch_size:
            return self.settings.batch_size
        guided = self.sample_config().guidance != 1.0
        return auto_batch_size(self.device, self.model.image_size, samples, guided)

    def report(self, command: str, inputs: list[Path], outputs: list[Path], extra: dict[str, Any], *,
               withhold: Sequence[Path] = ()) -> dict[str, Any]:
        """The run report of this session; the paths in ``withhold`` (``--anonymize``: every input the
        run was given) are replaced by ``<input N>``."""
        precision = self.settings.precision
        cast = self.device is not None and autoencoder_dtype(self.device, precision) is not None
        settings = {**self.settings.as_dict(self.sampling()),  # what "auto" resolved to on this machine
                    "autoencoder_precision": "bf16" if cast else ("fp32" if precision == "auto" else precision)}
        return run_report(command, settings=settings, device=str(self.device),
                          weights=self.weights, weights_sha256=weights_hash(self.weights), inputs=inputs,
                          outputs=outputs, timings=self.timings, extra=extra, withhold=list(withhold))


def read_input(path: Path, modality: str | None = None, series: str | None = None) -> Volume:
    """Read an input volume (any format :func:`medm2g_cli.io.read_volume` reads)."""
    from ..io import read_volume

    return read_volume(path, modality=modality, series=series)


def output_format(out: Path, fmt: str | None) -> str:
    """``--format`` or the format implied by OUT's suffix (no suffix: a DICOM series folder)."""
    if fmt:
        return str(parse_output_format(fmt).value)
    _, suf = split_name(out)
    suf = suf.lower()
    if suf in VOLUME_FORMATS:
        return VOLUME_FORMATS[suf]
    if suf == "":
        return "dicom"
    raise ConfigError(f"cannot tell the output format from '{out.name}'",
                      "end OUT with .nii.gz, .mha or .nrrd, give a folder name for DICOM, or pass --format")


def provenance_text(target: str, sources: Sequence[str], sess: Session) -> str:
    """The description written into synthetic outputs: what, from what, which model and settings."""
    s = sess.settings.sample_config()  # the model, then the settings that made the output
    return (f"SYNTHETIC {target} from {'+'.join(sources)}; medm2g {__version__}; weights {weights_hash(sess.weights)[:12]}; "
            f"{s.sampler} {s.steps} steps, guidance {s.guidance:g}, eta {s.eta:g}, seed {s.seed}")


def check_outputs(paths: Sequence[Path], overwrite: bool) -> None:
    """Every path is free to write (or ``overwrite``): :class:`OutputError` otherwise."""
    for p in paths:
        check_output(p, overwrite)
