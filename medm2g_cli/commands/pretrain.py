"""``medm2g pretrain`` and ``medm2g finetune``: train MedM2G on prepared data (Accelerate underneath).

Both commands are thin: they turn options into a :class:`medm2g_cli.training.runner.RunRequest`,
call :func:`medm2g_cli.training.runner.run`, and render progress (rich, stderr) or a JSON summary.
"""

from __future__ import annotations

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


def _loop_overrides(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None and v is not False}


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


def _print_config(req: Any) -> None:
    from ..training.print_config import resolved_config

    if _is_main():
        print_json(resolved_config(req))


def _need_output(output: Path | None) -> Path:
    if output is None:
        from ..errors import ConfigError

        raise ConfigError("no run folder given", "pass -o RUN_DIR (or --print-config to only show the configuration)")
    return output


def register(app: typer.Typer) -> None:
    """Add ``pretrain`` and ``finetune`` to the root app."""

    @app.command("pretrain", epilog=PRETRAIN_EPILOG)
    def pretrain(
        output: Out = None,
        data: Data = None,
        config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML/JSON run config (see examples/pretrain_tiny.yaml).", show_default=False)] = None,
        preset: Annotated[str | None, typer.Option("--preset", help="Model size: tiny|small|full.", show_default=False)] = None,
        init: Annotated[Path | None, typer.Option("--init", help="Start from this model folder instead of a fresh preset.", show_default=False)] = None,
        stages: Annotated[str | None, typer.Option("--stages", help="Comma list of autoencoders,alignment,diffusion,multiflow (default all).", show_default=False)] = None,
        flows: Annotated[str | None, typer.Option("--flows", help="Paired flows for multiflow, e.g. text-xray,text-ct,ct-mri,t1-t2.", show_default=False)] = None,
        flow_schedule: Annotated[str | None, typer.Option("--flow-schedule", help="chain (CoDi, sequential) or interleaved.", show_default=False)] = None,
        pairs: Annotated[str | None, typer.Option("--pairs", help="Diffusion parts TARGET<SOURCE[+SOURCE], comma list, e.g. 'ct<t1,pd<t1+t2' (overrides the config's stage_options.pairs).", show_default=False)] = None,
        steps: TrainSteps = None,
        batch_size: TrainBatch = None,
        lr: Lr = None,
        checkpoint_every: CkptEvery = None,
        seed: TrainSeed = None,
        resume: Resume = False,
        mixed_precision: MixedPrecision = None,
        grad_accum: GradAccum = None,
        total_batch_size: TotalBatch = None,
        ema: Ema = False,
        gradient_checkpointing: GradCkpt = False,
        cache_latents: CacheLatents = False,
        workers: Workers = None,
        tensorboard: Tensorboard = False,
        cpu: Cpu = False,
        overwrite: Overwrite = False,
        json_out: JsonOut = False,
        print_config: PrintConfig = False,
    ) -> None:
        """Pre-train MedM2G: autoencoders, central alignment + visual invariance, diffusion, multi-flow."""
        from dataclasses import replace

        from ..training import runner
        from ..training import stages as stages_mod

        req = runner.RunRequest(run_dir=output or Path(), data=list(data or []), preset=preset, init=init,
                                resume=resume, overwrite=overwrite, cpu=True if cpu else None)
        explicit = {k for k, v in {"preset": preset, "init": init, "data": data, "stages": stages, "flows": flows,
                                   "flow_schedule": flow_schedule}.items() if v}
        overrides = _loop_overrides(steps=steps, batch_size=batch_size, lr=lr, checkpoint_every=checkpoint_every,
                                    seed=seed, mixed_precision=mixed_precision, grad_accum=grad_accum, ema=ema,
                                    gradient_checkpointing=gradient_checkpointing, workers=workers,
                                    tensorboard=tensorboard, total_batch_size=total_batch_size)
        explicit |= set(overrides)
        if config is not None:
            req = runner.apply_config(req, runner.load_config_file(config), explicit)
        if stages:
            req.stages = stages_mod.parse_stages(stages)
        if flows:
            req.flows = [f for f in flows.split(",") if f.strip()]
        if flow_schedule:
            req.flow_schedule = flow_schedule
        req.loop = replace(req.loop, **overrides)
        if cache_latents:
            req.options = replace(req.options, cache_latents=True)
        if pairs:
            req.options = replace(req.options, pairs=tuple(p.strip() for p in pairs.split(",") if p.strip()))
        if print_config:
            _print_config(req)
            return
        req.run_dir = _need_output(output)
        summary = runner.run(req, reporter=RichReporter(enabled=not json_out and _is_main()))
        if _is_main():
            _render(summary, json_out)

    @app.command("finetune")
    def finetune(
        task: Annotated[str, typer.Argument(help="report-generation | image-generation | mri-synthesis | mri-ct-translation | xray-generation")],
        init: Annotated[Path | None, typer.Option("--init", help="Pre-trained model folder to start from.", show_default=False)] = None,
        output: Out = None,
        data: Data = None,
        config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML/JSON run config (e.g. a --print-config output) over the task's defaults.", show_default=False)] = None,
        preset: Annotated[str | None, typer.Option("--preset", help="Expected preset of --init (checked); with --print-config and no --init, the preset described.", show_default=False)] = None,
        steps: TrainSteps = None,
        batch_size: TrainBatch = None,
        lr: Lr = None,
        max_report_length: Annotated[int | None, typer.Option("--max-report-length", help="Report length limit in tokens (task default 45/50).", show_default=False)] = None,
        flows: Annotated[str | None, typer.Option("--flows", help="Train these cross-guided flows (multiflow stage) instead of the task's diffusion pairs.", show_default=False)] = None,
        pairs: Annotated[str | None, typer.Option("--pairs", help="Override the task's diffusion pairs TARGET<SOURCE[+SOURCE] (default: what eval measures).", show_default=False)] = None,
        checkpoint_every: CkptEvery = None,
        seed: TrainSeed = None,
        resume: Resume = False,
        mixed_precision: MixedPrecision = None,
        grad_accum: GradAccum = None,
        total_batch_size: TotalBatch = None,
        ema: Ema = False,
        gradient_checkpointing: GradCkpt = False,
        cache_latents: CacheLatents = False,
        workers: Workers = None,
        tensorboard: Tensorboard = False,
        cpu: Cpu = False,
        overwrite: Overwrite = False,
        json_out: JsonOut = False,
        print_config: PrintConfig = False,
    ) -> None:
        """Fine-tune a pre-trained model on one of the five tasks with the supplement's hyper-parameters.

        The task trains the conditioning `medm2g eval` measures for the dataset (IXI: pd<t1+t2; BraTS:
        t1ce<flair+t1+t2 and flair<t1+t1ce+t2; Gold Atlas: ct<t2 and t2<ct; reports: text<xray; ...).
        """
        from ..errors import ConfigError
        from ..training import runner

        loop_over = _loop_overrides(steps=steps, checkpoint_every=checkpoint_every, seed=seed,
                                    mixed_precision=mixed_precision, grad_accum=grad_accum, ema=ema,
                                    gradient_checkpointing=gradient_checkpointing, workers=workers,
                                    tensorboard=tensorboard, total_batch_size=total_batch_size)
        if init is None and not print_config:
            raise ConfigError("finetune needs --init MODEL", "pass the pre-trained model folder to start from")
        req = runner.finetune_request(
            task, init, list(data or []), output, preset=preset, batch_size=batch_size, lr=lr,
            max_report_length=max_report_length, flows=flows, pairs=pairs, **loop_over,
            cache_latents=cache_latents, resume=resume, overwrite=overwrite,
        )
        if init is None:  # --print-config without a model: describe the preset (default full)
            req.preset = preset or "full"
        if config is not None:
            explicit = set(loop_over) | {k for k, v in {"init": init, "data": data, "flows": flows}.items() if v}
            explicit |= {k for k, v in {"batch_size": batch_size, "lr": lr}.items() if v is not None}
            req = runner.apply_config(req, runner.load_config_file(config), explicit)
        req.cpu = True if cpu else None
        if print_config:
            _print_config(req)
            return
        req.run_dir = _need_output(output)
        summary = runner.run(req, reporter=RichReporter(enabled=not json_out and _is_main()))
        if _is_main():
            _render(summary, json_out)
