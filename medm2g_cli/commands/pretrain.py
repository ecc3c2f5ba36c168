"""``medm2g pretrain`` and ``medm2g finetune``: train MedM2G on prepared data (Accelerate underneath).

Both commands are thin: they pass their options to :func:`medm2g_cli.api.training.build_config` (the
one place that merges defaults, ``--config`` and options), then call :func:`~medm2g_cli.api.training.pretrain`
/ :func:`~medm2g_cli.api.training.finetune` (or :func:`~medm2g_cli.api.training.describe` for
``--print-config``) and render progress (rich, stderr) or a JSON summary. The options they share are
declared once (:func:`_with_run_options`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import JsonOut, Overwrite, console, print_json

Data = Annotated[list[Path] | None, typer.Option("--data", "-d", help="Prepared data folder (repeat for several).", show_default=False)]
Out = Annotated[Path | None, typer.Option("--output", "-o", help="Run folder (config, metrics.jsonl, checkpoint-<step>/, model/).", show_default=False)]
TrainSteps = Annotated[int | None, typer.Option("--steps", help="Optimizer steps per stage.", show_default=False)]
TrainBatch = Annotated[int | None, typer.Option("--batch-size", help="Samples per process per micro-step.", show_default=False)]
Lr = Annotated[float | None, typer.Option("--lr", help="Learning rate (AdamW).", show_default=False)]
CkptEvery = Annotated[int | None, typer.Option("--checkpoint-every", help="Write RUN/checkpoint-<step>/ every N steps (0: only the final model).", show_default=False)]
TrainSeed = Annotated[int | None, typer.Option("--seed", help="Seed: the same seed gives the same weights.", show_default=False)]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in -o from its last complete checkpoint.")]
MixedPrecision = Annotated[str | None, typer.Option("--mixed-precision", help="no|fp16|bf16 (fp16 needs a GPU).", show_default=False)]
GradAccum = Annotated[int | None, typer.Option("--grad-accum", help="Gradient accumulation steps.", show_default=False)]
Ema = Annotated[bool, typer.Option("--ema", help="Keep an exponential moving average of the weights; the model folders hold it.")]
GradCkpt = Annotated[bool, typer.Option("--gradient-checkpointing", help="Trade compute for memory in the UNets/transformers.")]
CacheLatents = Annotated[bool, typer.Option("--cache-latents", help="Encode each image once with the frozen autoencoder (diffusion stages).")]
Workers = Annotated[int | None, typer.Option("--workers", help="Data-loading worker processes.", show_default=False)]
Tensorboard = Annotated[bool, typer.Option("--tensorboard", help="Also log to RUN/tensorboard (needs the tensorboard package).")]
Cpu = Annotated[bool, typer.Option("--cpu", help="Train on the CPU even when a GPU is visible.")]
PrintConfig = Annotated[bool, typer.Option("--print-config", help="Print the fully resolved configuration as JSON (a valid --config) and exit without training; needs no --data or -o.")]
TotalBatch = Annotated[int | None, typer.Option("--total-batch-size", help="Samples per optimizer step over all processes; sets --grad-accum (must divide by processes x --batch-size).", show_default=False)]

PRETRAIN_EPILOG = (
    "Examples:\n\n"
    "  medm2g phantom chest -o chest && medm2g phantom brain -o brain\n\n"
    "  medm2g pretrain --preset tiny --data chest --data brain -o run --steps 200 --checkpoint-every 50\n\n"
    "  medm2g pretrain --config examples/pretrain_tiny.yaml -o run --resume\n\n"
    "  accelerate launch --num_processes 2 -m medm2g_cli.main pretrain --preset small --data chest -o run"
)


class RichReporter:
    """Rich progress bar with the loss terms and samples/s (stderr; only on the main process)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress: Any = None
        self.task: Any = None

    def start(self, phase: str, total: int, done: int) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"), console=console(), transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(phase, total=total, completed=done, info="")

    def update(self, record: dict[str, Any]) -> None:
        if self.progress is None:
            return
        terms = " ".join(f"{k.removeprefix('loss/')}={v:.4g}" for k, v in record.items()
                         if k.startswith("loss/") and isinstance(v, float))
        info = f"loss={record['loss']:.4g} {terms} | {record['samples_per_s']:.1f} samples/s"
        self.progress.update(self.task, completed=record["step"], info=info)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _render(summary: Any, json_out: bool) -> None:
    if json_out:
        print_json({"run_dir": summary.run_dir, "model": summary.model_dir, "phases": summary.phases,
                    "resumed_from": summary.resumed_from, "stages": summary.config["stages"],
                    "flow_added_parameters": summary.config["flow_added_parameters"]})
        return
    from rich.table import Table

    table = Table(title=f"run {summary.run_dir}")
    for col in ("stage", "steps", "first loss", "final loss", "samples/s", "trainable", "frozen"):
        table.add_column(col)
    splits = {s["stage"]: s for s in summary.config["stages"]}
    for ph in summary.phases:
        sp = splits.get(ph["name"], {})
        table.add_row(ph["name"], str(ph["steps"]), f"{ph['first'].get('loss', float('nan')):.4g}",
                      f"{ph['final'].get('loss', float('nan')):.4g}", f"{ph['samples_per_s']:.1f}",
                      f"{sp.get('trainable_total', 0):,}", f"{sp.get('frozen_total', 0):,}")
    c = console()
    c.print(table)
    for row in summary.config.get("flow_added_parameters") or []:
        c.print(f"flow {row['flow']}: +{row['added_parameters']:,} parameters (total {row['cumulative_parameters']:,})")
    c.print(f"model: {summary.model_dir}")


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


@dataclass(frozen=True)
class RunOptions:
    """The options ``pretrain`` and ``finetune`` share (declared once, see :func:`_with_run_options`)."""

    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    checkpoint_every: int | None = None
    seed: int | None = None
    resume: bool = False
    mixed_precision: str | None = None
    grad_accum: int | None = None
    total_batch_size: int | None = None
    ema: bool = False
    gradient_checkpointing: bool = False
    cache_latents: bool = False
    workers: int | None = None
    tensorboard: bool = False
    cpu: bool = False
    overwrite: bool = False
    json_out: bool = False
    print_config: bool = False

    def train(self) -> dict[str, Any]:
        """The :class:`~medm2g_cli.training.config.LoopConfig` fields given (None/False: not given)."""
        return {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                "checkpoint_every": self.checkpoint_every, "seed": self.seed, "mixed_precision": self.mixed_precision,
                "grad_accum": self.grad_accum, "total_batch_size": self.total_batch_size, "ema": self.ema,
                "gradient_checkpointing": self.gradient_checkpointing, "workers": self.workers,
                "tensorboard": self.tensorboard}

    def common(self) -> dict[str, Any]:
        """Keyword arguments of ``build_config`` besides the loop fields."""
        return {"cache_latents": self.cache_latents, "resume": self.resume, "overwrite": self.overwrite,
                "cpu": self.cpu, "train": self.train()}


_SHARED_OPTIONS: dict[str, Any] = {
    "steps": TrainSteps, "batch_size": TrainBatch, "lr": Lr, "checkpoint_every": CkptEvery, "seed": TrainSeed,
    "resume": Resume, "mixed_precision": MixedPrecision, "grad_accum": GradAccum, "total_batch_size": TotalBatch,
    "ema": Ema, "gradient_checkpointing": GradCkpt, "cache_latents": CacheLatents, "workers": Workers,
    "tensorboard": Tensorboard, "cpu": Cpu, "overwrite": Overwrite, "json_out": JsonOut, "print_config": PrintConfig,
}


def _with_run_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Give ``fn`` (which takes ``opts: RunOptions``) the shared options as Typer parameters."""
    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "opts"]
    defaults = RunOptions()
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=getattr(defaults, name), annotation=ann)
              for name, ann in _SHARED_OPTIONS.items()]

    @functools.wraps(fn)
    def command(**kw: Any) -> None:
        fn(**{k: v for k, v in kw.items() if k not in _SHARED_OPTIONS},
           opts=RunOptions(**{k: kw[k] for k in _SHARED_OPTIONS}))

    command.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    return command


def _execute(cfg: Any, opts: RunOptions, output: Path | None, train: Callable[..., Any]) -> None:
    """``--print-config`` (the resolved configuration as JSON), or the run in ``-o`` and its summary."""
    from dataclasses import replace

    from ..api import training as api

    if opts.print_config:
        if _is_main():
            print_json(api.describe(cfg))
        return
    if output is None:
        from ..errors import ConfigError

        raise ConfigError("no run folder given", "pass -o RUN_DIR (or --print-config to only show the configuration)")
    summary = train(replace(cfg, run_dir=output), reporter=RichReporter(enabled=not opts.json_out and _is_main()))
    if _is_main():
        _render(summary, opts.json_out)


def register(app: typer.Typer) -> None:
    """Add ``pretrain`` and ``finetune`` to the root app."""

    @app.command("pretrain", epilog=PRETRAIN_EPILOG)
    @_with_run_options
    def pretrain(
        opts: RunOptions,
        output: Out = None,
        data: Data = None,
        config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML/JSON run config (see examples/pretrain_tiny.yaml).", show_default=False)] = None,
        preset: Annotated[str | None, typer.Option("--preset", help="Model size: tiny|small|full.", show_default=False)] = None,
        init: Annotated[Path | None, typer.Option("--init", help="Start from this model folder instead of a fresh preset.", show_default=False)] = None,
        stages: Annotated[str | None, typer.Option("--stages", help="Comma list of autoencoders,alignment,diffusion,multiflow (default all).", show_default=False)] = None,
        flows: Annotated[str | None, typer.Option("--flows", help="Paired flows for multiflow, e.g. text-xray,text-ct,ct-mri,t1-t2.", show_default=False)] = None,
        flow_schedule: Annotated[str | None, typer.Option("--flow-schedule", help="chain (CoDi, sequential) or interleaved.", show_default=False)] = None,
        pairs: Annotated[str | None, typer.Option("--pairs", help="Diffusion parts TARGET<SOURCE[+SOURCE], comma list, e.g. 'ct<t1,pd<t1+t2' (overrides the config's stage_options.pairs).", show_default=False)] = None,
    ) -> None:
        """Pre-train MedM2G: autoencoders, central alignment + visual invariance, diffusion, multi-flow."""
        from ..api import training as api

        cfg = api.build_config(config, data=data, preset=preset, init=init, stages=stages, flows=flows,
                               flow_schedule=flow_schedule, pairs=pairs, **opts.common())
        _execute(cfg, opts, output, api.pretrain)

    @app.command("finetune")
    @_with_run_options
    def finetune(
        opts: RunOptions,
        task: Annotated[str, typer.Argument(help="report-generation | image-generation | mri-synthesis | mri-ct-translation | xray-generation")],
        init: Annotated[Path | None, typer.Option("--init", help="Pre-trained model folder to start from.", show_default=False)] = None,
        output: Out = None,
        data: Data = None,
        config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML/JSON run config (e.g. a --print-config output) over the task's defaults.", show_default=False)] = None,
        preset: Annotated[str | None, typer.Option("--preset", help="Expected preset of --init (checked); with --print-config and no --init, the preset described.", show_default=False)] = None,
        max_report_length: Annotated[int | None, typer.Option("--max-report-length", help="Report length limit in tokens (task default 45/50).", show_default=False)] = None,
        flows: Annotated[str | None, typer.Option("--flows", help="Train these cross-guided flows (multiflow stage) instead of the task's diffusion pairs.", show_default=False)] = None,
        pairs: Annotated[str | None, typer.Option("--pairs", help="Override the task's diffusion pairs TARGET<SOURCE[+SOURCE] (default: what eval measures).", show_default=False)] = None,
    ) -> None:
        """Fine-tune a pre-trained model on one of the five tasks with the supplement's hyper-parameters.

        The task trains the conditioning `medm2g eval` measures for the dataset (IXI: pd<t1+t2; BraTS:
        t1ce<flair+t1+t2 and flair<t1+t1ce+t2; Gold Atlas: ct<t2 and t2<ct; reports: text<xray; ...).
        """
        from ..api import training as api
        from ..errors import ConfigError

        if init is None and not opts.print_config:
            raise ConfigError("finetune needs --init MODEL", "pass the pre-trained model folder to start from")
        # --print-config without a model describes the preset, by default full
        cfg = api.build_config(config, task=task, data=data, preset=preset, init=init, flows=flows, pairs=pairs,
                               max_report_length=max_report_length, default_preset="full" if init is None else None,
                               **opts.common())
        _execute(cfg, opts, output, api.finetune)
