"""The reproduction's report (scripts/reproduce.py): scores of every run against the uncached samples and the real
images, its tables and its quality-vs-speedup plot."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from ..embedded import load_digits
from .metrics import (
    FeatureDistances,
    digit_features,
    emoji_category_accuracy,
    emoji_features,
    emoji_text_score,
    psnr,
    ssim,
)
from .solvers import SOLVERS


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def real_images(embedded: str) -> tuple[torch.Tensor, list[str] | None]:
    """The real images in [0, 1], the reference of FD and KID; for emoji also their captions."""
    if embedded == "digits":
        return (load_digits()[0] + 1) / 2, None
    from ..embedded.emoji import build_emoji_data

    data = build_emoji_data(32)  # raises, saying which Debian package to install, where the font is missing
    train = ~data.held_out
    images = torch.from_numpy(data.images[train]).permute(0, 3, 1, 2).float() / 255
    return images, [e.name for e, out in zip(data.emoji, data.held_out) if not out]


def _subgroups() -> dict[str, str]:
    from ..embedded.emoji import load_catalog

    return {e.name: e.subgroup for e in load_catalog()[0]}


def report(
    args, runs, samples, seconds, flops, processes: int, real: torch.Tensor, prompts=None, real_captions=None
) -> dict:
    """Scores and tables; ``real`` holds the real images in [0, 1], the reference for FD and KID, and
    with the emoji model ``real_captions`` their captions, ``prompts`` those of the samples."""
    subgroups_of = _subgroups() if prompts else None
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    reference, held_out = real[order[: len(order) // 2]], real[order[len(order) // 2 :]]
    distances = FeatureDistances(
        reference, emoji_features() if prompts else digit_features(), kid_subset_size=args.kid_subset
    )

    def grouped(images):
        return images.split(args.samples)[: args.groups]

    floor = [distances.distances(group) for group in held_out.split(args.samples) if len(group) == args.samples][
        : args.groups
    ]
    baselines = {r["solver"]: r["name"] for r in runs if r["group"] == "baseline"}
    results = []
    for run in runs:
        images = samples[run["name"]]
        baseline = samples[baselines[run["solver"]]]
        is_baseline = run["name"] == baselines[run["solver"]]
        scores = [distances.distances(group) for group in grouped(images)]
        row = {k: v for k, v in run.items() if k != "call"}
        row.update({"flop_fraction": run["call"]["block_cache"].flop_fraction} if "block_cache" in run["call"] else {})
        row.update(
            steps=run["call"]["num_inference_steps"],
            seconds=seconds[run["name"]],
            speedup=seconds[baselines[run["solver"]]] / seconds[run["name"]],
            psnr=None if is_baseline else psnr(baseline, images).clamp(max=100).mean().item(),
            ssim=None if is_baseline else ssim(baseline, images).mean().item(),
            fd=mean_std([s["fd"] for s in scores]),
            kid=mean_std([s["kid"] for s in scores]),
        )
        if prompts:
            row.update(
                text_score=emoji_text_score(images, prompts).mean().item(),
                group_accuracy=emoji_category_accuracy(images, [subgroups_of[p] for p in prompts])["group"],
            )
        results.append(row)
    payload = dict(
        arguments=vars(args),
        processes=processes,
        samples_per_setting=args.samples * args.groups,
        real_vs_real=dict(fd=mean_std([s["fd"] for s in floor]), kid=mean_std([s["kid"] for s in floor])),
        flops={str(b): dict(full=f, cached=c) for b, (f, c) in flops.items()},
        runs=results,
    )
    if prompts:  # what the judges say of real images with their own captions: the ceiling of both
        captions = [real_captions[i] for i in order[len(order) // 2 :].tolist()]
        payload["real_judged"] = dict(
            text_score=emoji_text_score(held_out, captions).mean().item(),
            group_accuracy=emoji_category_accuracy(held_out, [subgroups_of[c] for c in captions])["group"],
        )
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    (output / "tables.md").write_text(tables(payload))
    plot(payload, output / "quality_vs_speedup.png")
    print(tables(payload))
    print(f"wrote {output / 'results.json'}, {output / 'tables.md'}, {output / 'quality_vs_speedup.png'}")
    return payload


def _pm(pair, scale=1.0, digits=2) -> str:
    return f"{pair[0] * scale:.{digits}f} ± {pair[1] * scale:.{digits}f}"


def family(payload: dict, group: str, solver: str | None = None) -> list[dict]:
    """The runs of one table. The branch sweep includes the interval run at its N and branch; the
    equal-FLOPs table of a solver holds its uniform DeepCache runs and its fewer-steps runs."""
    runs = payload["runs"]
    main_solver = payload["arguments"]["solvers"][0]
    if group == "branch sweep":
        interval = payload["arguments"]["sweep_interval"]
        shared = [
            r for r in runs if r["group"] == "interval" and r["schedule"] == "uniform" and r["interval"] == interval
        ]
        return sorted(shared + [r for r in runs if r["group"] == group], key=lambda r: r["branch"])
    if group == "composition":
        interval, deltas = payload["arguments"]["compose_interval"], payload["arguments"]["compose_deltas"]
        deepcache = [
            r for r in runs if r["group"] == "interval" and r["schedule"] == "uniform" and r["interval"] == interval
        ]
        block = [r for r in runs if r["group"] == "block caching" and r["delta"] in deltas]
        return deepcache + block + [r for r in runs if r["group"] == group]
    if group == "equal flops":
        cached = [
            r
            for r in runs
            if r["solver"] == solver and r["group"] in ("interval", "solver") and r["schedule"] == "uniform"
        ]
        return cached + [r for r in runs if r["solver"] == solver and r["group"] == "fewer steps"]
    return [r for r in runs if r["group"] == group and r.get("solver", main_solver) == main_solver]


def baseline_of(payload: dict, solver: str) -> dict:
    return next(r for r in payload["runs"] if r["group"] == "baseline" and r["solver"] == solver)


def tables(payload: dict) -> str:
    args = payload["arguments"]
    floor = payload["real_vs_real"]
    judged = "text_score" in payload["runs"][0]
    solver_names = {key: SOLVERS[key].label for key in args["solvers"]}
    main_name = solver_names[args["solvers"][0]]
    lines = [
        f"{payload['samples_per_setting']} samples per setting ({args['groups']} seed groups of {args['samples']}; ± "
        "is the "
        f"standard deviation across groups), {args['steps']} steps for the baselines, {payload['processes']} "
        "process(es)" + (f", guidance scale {args['guidance_scale']:g}." if judged else "."),
        f"Real-vs-real floor (held-out real images, same group size): FD {_pm(floor['fd'])}, KID x1000 "
        f"{_pm(floor['kid'], 1000, 1)}."
        + (
            f" Real images with their own captions: text score {payload['real_judged']['text_score']:.1f}, "
            f"group accuracy {payload['real_judged']['group_accuracy']:.1%}."
            if judged
            else ""
        ),
        "",
    ]
    groups = [
        (
            ("guidance",),
            f"The uncached model at other guidance scales ({args['guidance_scale']:g} in the first row), {main_name}",
        ),
        (("interval",), f"Quality vs interval N (branch {args['branch']}), {main_name}"),
    ]
    groups += [
        (("equal flops", key), f"Equal FLOPs: {name} with fewer steps vs DeepCache (branch {args['branch']}, uniform)")
        for key, name in solver_names.items()
    ]
    groups += [
        (("branch sweep",), f"Branch sweep at N = {args['sweep_interval']}, uniform, {main_name}"),
        (
            ("block caching",),
            f"Block Caching (no scale-shift), profiled over {args['profile_runs']} separate runs, {main_name}",
        ),
        (("composition",), f"Compositions at N = {args['compose_interval']}, each beside its parts, {main_name}"),
    ]
    extra_head = " text score | group accuracy |" if judged else ""
    head = (
        "| setting | steps | FLOP-ideal speedup | measured speedup | PSNR vs baseline (dB) | SSIM vs baseline | FD | "
        "KID x1000 |" + extra_head
    )
    for selector, title in groups:
        rows = family(payload, *selector)
        if not rows:
            continue
        solver = selector[1] if selector[0] == "equal flops" else args["solvers"][0]
        rows = (
            [baseline_of(payload, solver), *sorted(rows, key=lambda r: r["ideal"])]
            if selector[0] == "equal flops"
            else [baseline_of(payload, solver), *rows]
        )
        lines += [f"### {title}", "", head, "|---|---|---|---|---|---|---|---|" + ("---|---|" if judged else "")]
        for r in rows:
            name = r["name"] + (f" (= FLOPs of {r['matches']})" if r.get("matches") else "")
            if r.get("full_steps_per_call"):
                name += f" (threshold {r['threshold']:.3g}, {statistics.mean(r['full_steps_per_call']):.1f} full steps)"
            fidelity = ("-", "-") if r["psnr"] is None else (f"{r['psnr']:.1f}", f"{r['ssim']:.3f}")
            extra = f" {r['text_score']:.1f} | {r['group_accuracy']:.1%} |" if judged else ""
            lines.append(
                f"| {name} | {r['steps']} | {r['ideal']:.2f}x | {r['speedup']:.2f}x | {fidelity[0]} | {fidelity[1]} | "
                f"{_pm(r['fd'])} | {_pm(r['kid'], 1000, 1)} |" + extra
            )
        lines.append("")
    return "\n".join(lines + budget_table(payload))


def budget_table(payload: dict) -> list[str]:
    """PSNR and FD of every way to spend uniform N's full steps, and of fewer steps at the same FLOPs."""
    args = payload["arguments"]
    interval_runs = [r for r in payload["runs"] if r["group"] == "interval"]
    schedules = list(dict.fromkeys(r["schedule"] for r in interval_runs))
    if len(schedules) < 3:
        return []
    fewer = {
        r["matches"]: r for r in payload["runs"] if r["group"] == "fewer steps" and r["solver"] == args["solvers"][0]
    }
    lines = [
        f"### Equal budgets: PSNR vs baseline (dB) / FD, {SOLVERS[args['solvers'][0]].label}, branch {args['branch']}",
        "",
        "| N | " + " | ".join(schedules) + " | fewer steps |",
        "|---" * (len(schedules) + 2) + "|",
    ]
    for interval in sorted({r["interval"] for r in interval_runs}):
        cells = []
        for schedule in schedules:
            row = next((r for r in interval_runs if r["interval"] == interval and r["schedule"] == schedule), None)
            cells.append("-" if row is None else f"{row['psnr']:.1f} / {row['fd'][0]:.2f} ({row['ideal']:.2f}x)")
        match = next((r for name, r in fewer.items() if name.startswith(f"N={interval} ")), None)
        cells.append("-" if match is None else f"{match['psnr']:.1f} / {match['fd'][0]:.2f} ({match['name']})")
        lines.append(f"| {interval} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot(payload: dict, path: Path) -> None:
    """FD and PSNR against FLOP-ideal speedup, one line per family of settings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args = payload["arguments"]
    main_solver = args["solvers"][0]
    families = {
        f"DeepCache, uniform, {SOLVERS[main_solver].label}": [
            r for r in family(payload, "interval") if r["schedule"] == "uniform"
        ],
        **{
            f"DeepCache, {schedule}, {SOLVERS[main_solver].label}": [
                r for r in family(payload, "interval") if r["schedule"] == schedule
            ]
            for schedule in ("non-uniform", "calibrated", "adaptive")
        },
        **{
            f"DeepCache, uniform, {SOLVERS[s].label}": [
                r for r in family(payload, "equal flops", s) if r["group"] == "solver"
            ]
            for s in args["solvers"][1:]
        },
        **{
            f"{SOLVERS[s].label}, fewer steps": [
                r for r in family(payload, "equal flops", s) if r["group"] == "fewer steps"
            ]
            for s in args["solvers"]
        },
        f"branch sweep, N={args['sweep_interval']}": family(payload, "branch sweep"),
        **{
            f"Block Caching, {units}": [r for r in family(payload, "block caching") if r["units"] == units]
            for units in args["block_units"]
        },
        **{r["name"]: [r] for r in payload["runs"] if r["group"] == "composition"},
    }
    figure, (fd_axis, psnr_axis) = plt.subplots(1, 2, figsize=(12, 4.6))
    for index, (label, rows) in enumerate(families.items()):
        if not rows:
            continue
        color = plt.cm.tab20(index % 20)  # more families than the default ten colours
        sweep = "sweep" in label
        if len(rows) == 1 and rows[0]["group"] == "composition":  # a composition: one marker
            fd_axis.plot(
                rows[0]["ideal"], rows[0]["fd"][0], marker="*", markersize=10, linestyle="", color=color, label=label
            )
            psnr_axis.plot(
                rows[0]["ideal"], rows[0]["psnr"], marker="*", markersize=10, linestyle="", color=color, label=label
            )
            continue
        rows = sorted(rows if sweep else [baseline_of(payload, rows[0]["solver"]), *rows], key=lambda r: r["ideal"])
        style = dict(marker="o", linestyle="--" if "fewer steps" in label else "-", color=color)
        x = [r["ideal"] for r in rows]
        fd_axis.errorbar(
            x, [r["fd"][0] for r in rows], yerr=[r["fd"][1] for r in rows], capsize=3, label=label, **style
        )
        cached = [r for r in rows if r["psnr"] is not None]
        psnr_axis.plot([r["ideal"] for r in cached], [r["psnr"] for r in cached], label=label, **style)
        if sweep:  # name the branch of each point
            for r in rows:
                fd_axis.annotate(
                    f"b{r['branch']}", (r["ideal"], r["fd"][0]), textcoords="offset points", xytext=(4, 4), fontsize=7
                )
    floor = payload["real_vs_real"]["fd"][0]
    fd_axis.axhline(floor, color="grey", linestyle=":", label="real vs real")
    fd_axis.set(
        xlabel="FLOP-ideal speedup",
        ylabel="Frechet distance (classifier features)",
        title="Sample quality (lower is better)",
    )
    psnr_axis.set(
        xlabel="FLOP-ideal speedup",
        ylabel="PSNR vs uncached sample (dB)",
        title="Fidelity to the same solver's baseline",
    )
    for axis in (fd_axis, psnr_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
