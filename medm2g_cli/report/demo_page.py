"""The ``medm2g demo`` result page: one figure row per subject and the HTML that shows the metrics."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from .preview import grid, save_png, to_uint8


def figure_row(path: Path, panels: list[tuple[str, np.ndarray | None, str]], head: np.ndarray) -> None:
    """One row of panels at the axial slice with the most head: each with its own fixed window
    (CT: -160..1000 HU; error and uncertainty: 0..99th percentile in the head; MRI: 0.5..99.5th)."""
    k = int(np.argmax(head.sum(axis=(0, 1))))
    tiles = []
    for _, arr, kind in panels:
        if arr is None:
            continue
        sl = np.flipud(arr[:, :, k].T)[:, ::-1]  # radiological display of the RAS phantom grid
        if kind == "ct":
            win = (-160.0, 1000.0)
        elif kind in ("err", "std"):
            hi = float(np.percentile(arr[head], 99)) if head.any() else 1.0
            win = (0.0, hi if hi > 0 else 1.0)
        else:
            lo, hi = (float(v) for v in np.percentile(arr[head], [0.5, 99.5])) if head.any() else (0.0, 1.0)
            win = (lo, hi if hi > lo else lo + 1)
        tiles.append(to_uint8(sl, win))
    save_png(grid([tiles], side=192), path, overwrite=True)


def demo_html(m: dict[str, Any]) -> str:
    """The demo's ``index.html`` from its metrics (figures and outputs referenced by relative paths)."""
    e = html.escape

    def table(head: list[str], rows: list[list[Any]]) -> str:
        h = "".join(f"<th>{e(str(x))}</th>" for x in head)
        b = "".join("<tr>" + "".join(f"<td>{e(f'{x:.3f}' if isinstance(x, float) else str(x))}</td>" for x in r) + "</tr>"
                    for r in rows)
        return f"<table><tr>{h}</tr>{b}</table>"

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>medm2g demo</title><style>"
             "body{font-family:sans-serif;max-width:1200px;margin:2em auto}img{max-width:100%}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
             ".ok{color:#080}.bad{color:#b00}</style></head><body>",
             "<h1>medm2g demo</h1><p>Held-out phantom subjects (seed "
             f"{m['held_out_seed']}; the demo weights were trained on seed {m['train_seed']}). "
             "Outputs are synthetic and not for clinical use.</p>"]
    parts.append("<h2>Checks</h2>" + table(["check", "passed"], [[k, "yes" if v else "NO"] for k, v in m["checks"].items()]))
    t = m["mri2ct"]
    parts.append("<h2>MRI &rarr; CT (translate mri2ct)</h2><p>Columns: T1 input | CT output | CT truth | |error| | "
                 f"uncertainty (std of {m['settings']['samples']} samples). MAE in HU inside the head; baseline: "
                 f"{e(t['baseline'])}.</p>")
    parts.append(table(["subject", "model MAE (HU)", "global map MAE (HU)", "autoencoder alone (floor)", *_DZ_HEAD],
                       [[r["subject"], r["model_mae_hu"], r["global_map_mae_hu"], r["autoencoder_mae_hu"], *_dz(r)]
                        for r in t["subjects"]]
                       + [["mean", t["model_mae_hu"], t["global_map_mae_hu"], t["autoencoder_mae_hu"], *_dz(t)]]))
    parts.append(_through_plane_note(t))
    parts += [f"<img src='img/mri2ct_{r['subject']}.png' alt='mri2ct {e(r['subject'])}'>" for r in t["subjects"]]
    sy = m["synthesis"]
    parts.append("<h2>T1 + T2 &rarr; PD (synthesize)</h2><p>Columns: T1 | T2 | PD output | PD truth | |error| | "
                 f"uncertainty. PSNR, {e(sy['protocol'])}.</p>")
    parts.append(table(["subject", "model PSNR", "copy closest input", "global map PSNR", "autoencoder alone (ceiling)",
                        *_DZ_HEAD],
                       [[r["subject"], r["model_psnr"], f"{r['copy_psnr']:.3f} ({r['copied']})", r["global_map_psnr"],
                         r["autoencoder_psnr"], *_dz(r)] for r in sy["subjects"]]
                       + [["mean", sy["model_psnr"], sy["copy_psnr"], sy["global_map_psnr"], sy["autoencoder_psnr"],
                           *_dz(sy)]]))
    parts.append(_through_plane_note(sy))
    parts += [f"<img src='img/synth_{r['subject']}.png' alt='synthesis {e(r['subject'])}'>" for r in sy["subjects"]]
    g = m["xray_generation"]
    parts.append(f"<h2>Text &rarr; X-ray (generate xray)</h2><p>Finding recovered from the generated images by the "
                 f"aligned encoders: accuracy {g['retrieval_accuracy']:.3f} over {g['images']} images "
                 f"(chance {g['chance']:.3f}; the model grades itself).</p>")
    j, jt = g["judge"], g["joint"]
    parts.append(f"<p>Independent judge (a finding classifier trained only on real phantom radiographs): "
                 f"accuracy {j['accuracy']:.3f} (chance {j['chance']:.3f}, p = {j['p_value']:.3g}; issue 18's target "
                 f"{e(j['target'])}: {'met' if j['within_target'] else 'not met'}). The judge's six-way accuracy on the "
                 f"held-out real X-rays is {j['judge_on_real']['six_way']:.2f}, and "
                 f"{j['judge_on_autoencoder_round_trip']['six_way']:.2f} on the same X-rays after the model's "
                 f"autoencoder (what any generator with this autoencoder can reach).</p>")
    parts.append(f"<p>X-ray + report pairs ({jt['pairs']}): findings the judge sees vs findings the report names, "
                 f"mean Jaccard {jt['mean_jaccard']:.3f} vs {jt['shuffled_mean_jaccard']:.3f} for shuffled pairs "
                 f"(p = {jt['p_value']:.3g}).</p>")
    for c in g["classes"]:
        parts.append(f"<h3>{e(c)}</h3><p><i>{e(g['prompts'][c])}</i></p><img src='generate/{e(c)}/contact_sheet.png' "
                     f"alt='generated {e(c)}' style='max-width:600px'>")
    r = m["report"]
    parts.append(f"<h2>X-ray &rarr; report (report)</h2><p>Macro-F1 of named findings over {r['studies']} studies: "
                 f"model {r['model_macro_f1']:.3f}, majority class {r['majority_macro_f1']:.3f}.</p>")
    parts.append(table(["class", "F1"], [[k, v] for k, v in r["per_class_f1"].items()]))
    for x in r["examples"]:
        parts.append(f"<div style='display:flex;gap:1em;margin:1em 0'><img src='{e(x['image'])}' style='width:192px'>"
                     f"<div><b>truth</b>: {e(x['truth'])}<br><b>generated</b>: {e(x['generated'])}</div></div>")
    parts.append("<h2>Evaluation (medm2g eval, T1 + T2 &rarr; PD on the prepared held-out cohort)</h2>")
    parts.append(f"<pre>{e(m['eval']['markdown'])}</pre>")
    parts.append(f"<p>Finished in {m['seconds']} s.</p></body></html>")
    return "\n".join(parts)


_DZ_HEAD = ["through-plane |dz| output / truth", "autoencoder alone / truth", "in-plane sharpness output / truth",
            "autoencoder alone / truth"]


def _dz(row: dict[str, Any]) -> list[float]:
    return [row["through_plane_ratio"], row["autoencoder_through_plane_ratio"], row["sharpness_ratio"],
            row["autoencoder_sharpness_ratio"]]


def _through_plane_note(t: dict[str, Any]) -> str:
    ok = "<span class='ok'>within</span>" if t["through_plane_within_target"] else "<span class='bad'>outside</span>"
    return (f"<p>Through-plane consistency ({html.escape(t['through_plane'])}): {t['through_plane_ratio']:.3f}, "
            f"{ok} issue 18's target ({html.escape(t['through_plane_target'])}); information, not one of the checks. "
            f"In-plane sharpness ({html.escape(t['sharpness'])}): {t['sharpness_ratio']:.3f} (the autoencoder alone "
            f"{t['autoencoder_sharpness_ratio']:.3f}): a blurred output stays within the through-plane target, "
            "this number shows it.</p>")
