"""The main job, end to end on embedded data: ``python -m studies.quickstart``.

A baseline and SMAC are pre-trained offline on the same data, each is fine-tuned online with
SAC, and one page shows what happened at the switch: both transfer curves with their drop
verdicts and the reward along the line between each offline and online checkpoint with its
valley verdict (``OUT/quickstart.html``, ``OUT/quickstart.png``).

1. import the task's embedded dataset into the local Minari store, unless it is there;
2. write the study as an experiment spec (``OUT/quickstart.yaml``) and run it with
   ``python -m studies.experiments run``: the two offline runs side by side, then their SAC
   fine-tunings (``--jobs`` at a time, each on one core);
3. ``python -m landscape.interpolate`` on both offline -> online pairs, in one figure;
4. ``python -m smac_core.metrics`` on both online runs: the drop at transfer and the regret;
5. the page, and the same findings printed.

Tasks (``--task``): ``hopper`` (default), the hopper-medium-replay dataset this project's
generator made (``smac_core/data/embedded/PROVENANCE.md``), with TD3+BC as the baseline; ``door``,
the 25 real Adroit door human demonstrations with a binary reward, with CalQL. Every step is a
command of the toolkit run in-process, printed as a pasteable line first; everything is
resumable (rerunning continues where it stopped), and every flag is checked before the first
step runs.
"""

from __future__ import annotations

import argparse
import functools
import html
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from landscape import interpolate
from landscape.interpolate import interpolation_ts
from smac_core import metrics
from smac_core.cli import add_device_flag, check_seed, command_line, resolve_device
from smac_core.data import __main__ as data_cli
from smac_core.errors import SmacError, cli_entry
from studies.experiments import cli as experiments_cli

SPEC_FILE = "quickstart.yaml"
PAGE, PNG = "quickstart.html", "quickstart.png"
BASELINES = ("td3bc", "cql", "calql", "iql")
NAMES = {"td3bc": "TD3+BC", "cql": "CQL", "calql": "CalQL", "iql": "IQL", "smac": "SMAC"}


@dataclass(frozen=True)
class QuickstartTask:
    """An embedded dataset and the quick start's defaults on it."""

    task: str                   # the task (smac_core.tasks) the runs are evaluated in
    dataset_id: str             # the Minari id the embedded file is imported as
    file: str                   # in smac_core/data/embedded/
    import_flags: tuple[str, ...]
    baseline: str
    offline_steps: int
    score_model_steps: int
    online_steps: int
    episodes: int
    points: int


TASKS = {
    "hopper": QuickstartTask(
        "hopper-medium-replay", "local/hopper/medium-replay-seed0-v0",
        "hopper-medium-replay-seed0.hdf5", ("--env", "hopper-medium-replay"), "td3bc",
        offline_steps=3000, score_model_steps=3000, online_steps=5000, episodes=10, points=13),
    "door": QuickstartTask(
        "door-binary", "local/door/human-binary-v0", "door-v0_demos_clipped.hdf5",
        ("--env", "AdroitHandDoor-v1", "--reward", "binary", "--ignore-timeouts"), "calql",
        offline_steps=2000, score_model_steps=2000, online_steps=2000, episodes=5, points=11),
}


def embedded_file(name: str) -> Path:
    """A shipped dataset file (``smac_core/data/embedded/``)."""
    return Path(str(files("smac_core.data") / "embedded" / name))


def embedded_door_file() -> Path:
    """The shipped D4RL hdf5 of the 25 door human demonstrations."""
    return embedded_file(TASKS["door"].file)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m studies.quickstart",
        description="A baseline and SMAC pre-trained offline on embedded data, each fine-tuned "
                    "online with SAC; the drop at the switch and the reward along the line "
                    "between each offline and online checkpoint, on one page.")
    parser.add_argument("--task", choices=sorted(TASKS), default="hopper",
                        help="hopper (default): the generated hopper-medium-replay data, 90,000 "
                             "transitions; door: the 25 real Adroit door demonstrations, binary "
                             "reward")
    parser.add_argument("--baseline", choices=BASELINES,
                        help="the offline baseline beside SMAC (default: td3bc on hopper, calql "
                             "on door)")
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"),
                        help="directory of the study, the landscape and the page (default "
                             "runs/quickstart)")
    parser.add_argument("--offline-steps", type=int,
                        help="offline gradient updates of each method (default: 3000 on "
                             "hopper, 2000 on door)")
    parser.add_argument("--score-model-steps", type=int,
                        help="most training steps of SMAC's diffusion score model (default: "
                             "the same as --offline-steps)")
    parser.add_argument("--online-steps", type=int,
                        help="SAC fine-tuning env steps (default: 5000 on hopper, 2000 on door)")
    parser.add_argument("--episodes", type=int,
                        help="evaluation episodes per evaluation and per landscape point, 2 or "
                             "more (default: 10 on hopper, 5 on door)")
    parser.add_argument("--points", type=int,
                        help="points on each interpolation line in [-0.25, 1.25], 3 or more "
                             "(default: 13 on hopper, a step of 0.125; 11 on door)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="training runs at a time, each on one core (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every step (default 0)")
    add_device_flag(parser, "where every step runs")
    return parser


@dataclass(frozen=True)
class Settings:
    """The flags with the task's defaults filled in, checked."""

    task: QuickstartTask
    baseline: str
    out: Path
    offline_steps: int
    score_model_steps: int
    online_steps: int
    episodes: int
    points: int
    jobs: int
    seed: int
    device: str

    def run_dir(self, method: str, phase: str) -> Path:
        """``phase``: "offline" or "online" (the SAC fine-tuning); the experiment grid's layout."""
        return (self.out / self.task.task / method / f"seed{self.seed}"
                / ("offline" if phase == "offline" else "online-sac"))

    @property
    def methods(self) -> tuple[str, str]:
        return self.baseline, "smac"


def check_flags(args: argparse.Namespace) -> Settings:
    """The settings, or ``SmacError`` naming the flag of any value that a step would refuse,
    before anything is trained (a bad value would otherwise surface minutes later, in the step
    that reads it)."""
    task = TASKS[args.task]
    offline_steps = args.offline_steps or task.offline_steps
    if args.offline_steps is not None and args.score_model_steps is None:
        score_model_steps = args.offline_steps
    else:
        score_model_steps = args.score_model_steps or task.score_model_steps
    values = {"--offline-steps": args.offline_steps, "--score-model-steps": args.score_model_steps,
              "--online-steps": args.online_steps, "--jobs": args.jobs}
    for flag, value in values.items():
        if value is not None and value < 1:
            raise SmacError(f"{flag} must be a positive integer, got {value}")
    episodes = task.episodes if args.episodes is None else args.episodes
    if episodes < 2:
        raise SmacError(f"--episodes must be 2 or more, got {episodes}: the drop at transfer "
                        "and the valley verdict need a standard error over episodes")
    points = task.points if args.points is None else args.points
    interpolation_ts(points, *interpolate.build_parser().get_default("range"))
    check_seed(args.seed)
    if args.out.exists() and not args.out.is_dir():
        raise SmacError(f"--out {args.out} is a file, not a directory")
    settings = Settings(task, args.baseline or task.baseline, args.out.resolve(), offline_steps,
                        score_model_steps, args.online_steps or task.online_steps, episodes,
                        points, args.jobs, args.seed, resolve_device(args.device))
    spec = settings.out / SPEC_FILE
    if spec.is_file() and spec.read_text() != spec_text(settings):
        # its runs would mix with runs of other settings
        raise SmacError(f"--out {settings.out} holds a quick start with other settings "
                        f"({spec}); give another --out, or the same flags as before")
    return settings


def spec_text(settings: Settings) -> str:
    """The study as an experiment spec (``python -m studies.experiments``)."""
    import yaml

    online = settings.online_steps
    every = max(1, online // 10)
    spec = {
        "description": f"quick start: {NAMES[settings.baseline]} and SMAC offline on "
                       f"{settings.task.dataset_id}, each fine-tuned with SAC",
        "root": str(settings.out),
        "tasks": {settings.task.task: {"dataset": settings.task.dataset_id}},
        "seeds": [settings.seed],
        "offline": {
            "steps": settings.offline_steps,
            "eval_every": max(1, settings.offline_steps // 6),
            "eval_episodes": settings.episodes,
            "algorithms": {
                settings.baseline: {"online": ["sac"]},
                "smac": {"online": ["sac"],
                         "set": {"score_model": {"steps": settings.score_model_steps}}}}},
        "online": {
            "steps": online, "eval_every": every, "eval_episodes": settings.episodes,
            "early_eval_every": every, "early_eval_until": online,
            "mix": 0.5, "algorithms": {"sac": {}}}}
    header = ("# Written by python -m studies.quickstart: the study it runs. Rerun it with\n"
              f"#   python -m studies.experiments run {settings.out / SPEC_FILE}\n")
    return header + yaml.safe_dump(spec, sort_keys=False)


def write_spec(settings: Settings) -> Path:
    """``OUT/quickstart.yaml`` (one of other settings was refused by ``check_flags``; the same
    one is rewritten unchanged: the study resumes)."""
    from smac_core.files import atomic_write_text

    path = settings.out / SPEC_FILE
    settings.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, spec_text(settings))
    return path


def _step(title: str, line: str, call: Callable[[], int]) -> None:
    """Print a step's pasteable command ``line``, then ``call`` it (the same, in this process);
    stop the quick start with its status if it fails."""
    print(f"\n== {title}\n$ {line}", flush=True)
    status = call()
    if status:
        raise SystemExit(status)


def run_step(title: str, main: Callable[[list[str]], int], argv: list[str]) -> None:
    """The command ``argv`` (``python -m MODULE ARGS``) as a step: its ``main(ARGS)``."""
    _step(title, command_line(argv), functools.partial(main, argv[3:]))


@dataclass(frozen=True)
class Finding:
    """One method's offline -> online pair: its drop at transfer and its line's verdict."""

    method: str
    offline_final: float
    drop: metrics.TransferDrop
    regret: float | None
    line_verdict: dict[str, Any]
    unit: str

    def describe(self) -> str:
        name = NAMES[self.method]
        drop = self.drop
        if drop.verdict == "drop":
            transfer = (f"drops {drop.drop:.2f} ± {drop.se:.2f} {self.unit} by step {drop.step} "
                        f"(paired over episodes, p = {drop.p_value:.2g})")
        elif drop.drop > 0:
            transfer = (f"dips {drop.drop:.2f} ± {drop.se:.2f} {self.unit} by step {drop.step}, "
                        f"not significant (p = {drop.p_value:.2g})")
        else:
            transfer = f"does not dip within the first {drop.window} steps"
        return (f"{name} -> SAC: offline final {self.offline_final:.2f} {self.unit}; the "
                f"fine-tuning {transfer}. Line offline -> online: {self.line_text()}.")

    def line_text(self) -> str:
        """The line's valley verdict in words (``landscape.valley``)."""
        verdict = self.line_verdict
        if verdict["verdict"] == "valley":
            return (f"a valley, {verdict['depth']:.2f} {self.unit} below its lower end at "
                    f"t = {verdict['t_min']:.3g}")
        if verdict["verdict"] == "monotone":
            return "no valley, monotone"
        return ("no valley, but not monotone (a significant move against its overall "
                "direction between two points)")


def findings(settings: Settings, interpolation: Path) -> list[Finding]:
    """Each method's drop (``smac_core.metrics``) and line verdict (``interpolation.json``), in
    normalised points, or in % for a task scored by its success rate."""
    from smac_core.tasks import find_task

    curves = json.loads((interpolation / "interpolation.json").read_text())
    result = []
    for method, curve in zip(settings.methods, curves["curves"], strict=True):
        run = metrics.load_run(settings.run_dir(method, "online"))
        drop = metrics.transfer_drop(run.curve, run.baseline)
        offline_final = float(run.baseline.mean()) if run.baseline is not None else \
            float(run.curve.mean[0])
        unit = ("return" if run.curve.metric != "score" else
                "% success" if find_task(settings.task.task).scored_by_success else "points")
        result.append(Finding(method, offline_final, drop, metrics.run_regret(run),
                              curve["verdict"], unit))
    return result


def budget_note(settings: Settings) -> str:
    return (f"Budgets: {settings.offline_steps:,} offline updates (SMAC's score model at most "
            f"{settings.score_model_steps:,} steps), {settings.online_steps:,} SAC env steps, "
            f"{settings.episodes} evaluation episodes, seed {settings.seed}; the paper used 1M "
            "offline and 1M online steps and 5 seeds. One seed shows one outcome, not a rate: "
            "python -m studies.experiments runs a spec with several seeds "
            "(notebooks/specs/reduced.yaml).")


def write_page(settings: Settings, found: list[Finding], interpolation: Path) -> list[Path]:
    """``OUT/quickstart.html`` (the findings, the transfer curves and both interpolation lines,
    interactive) and ``OUT/quickstart.png`` (the two plots)."""
    import numpy as np
    from matplotlib.figure import Figure

    from landscape.plot import COLORS, draw_interpolations, interpolation_figure, save_png
    from landscape.valley import Curve, ValleyVerdict
    from smac_core.files import atomic_write_text
    from studies import plot

    runs = [settings.run_dir(m, phase) for m in settings.methods for phase in ("offline", "online")]
    labels = [f"{NAMES[m]}{suffix}" for m in settings.methods for suffix in (" offline", " → SAC")]
    # a method's offline and online curves share the color of its interpolation line
    curves = plot.learning_curves(runs, labels)
    colors = [COLORS[k] for k in range(len(settings.methods)) for _ in ("offline", "online")]
    data = json.loads((interpolation / "interpolation.json").read_text())
    lines = [Curve(c["label"], *(np.asarray(c[k]) for k in ("t", "mean", "se")),
                   ValleyVerdict.from_dict(c["verdict"])) for c in data["curves"]]
    unit = data["unit"]
    title = f"Quick start: {settings.task.dataset_id}"

    parts = [plot.learning_curve_figure(curves, colors).to_html(full_html=False,
                                                                include_plotlyjs=True),
             interpolation_figure(lines, unit, "Reward along the line offline → online (t = 0: "
                                  "offline final, t = 1: online final)"
                                  ).to_html(full_html=False, include_plotlyjs=False)]
    text = "".join(f"<li>{html.escape(f.describe())}</li>" for f in found)
    atomic_write_text(settings.out / PAGE,
                      f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
                      f"</head><body><h2>{html.escape(title)}</h2><ul>{text}</ul>"
                      f"<p>{html.escape(budget_note(settings))}</p>{''.join(parts)}</body></html>")

    figure = Figure(figsize=(14, 4.5))
    left, right = figure.subplots(1, 2)
    plot.draw_learning_curves(left, curves, colors)
    left.set_title("Transfer: offline, then SAC")
    left.legend(fontsize=8)
    draw_interpolations(right, lines, unit)
    right.set_title("Reward along offline → online")
    right.legend(fontsize=8)
    figure.suptitle(title)
    save_png(figure, settings.out / PNG)
    return [settings.out / PAGE, settings.out / PNG]


@cli_entry
def main(argv: list[str] | None = None) -> int:
    settings = check_flags(build_parser().parse_args(argv))
    from smac_core.data.minari_store import local_dataset_ids  # after parsing: --help is quick

    task = settings.task
    if task.dataset_id not in local_dataset_ids():
        run_step("import the embedded dataset", data_cli.main,
                 ["python", "-m", "smac_core.data", "import", str(embedded_file(task.file)),
                  "--id", task.dataset_id, *task.import_flags])
    run_step("the dataset", data_cli.main,
             ["python", "-m", "smac_core.data", "show", task.dataset_id])
    spec = write_spec(settings)
    run_step(f"{NAMES[settings.baseline]} and SMAC offline, then each fine-tuned with SAC "
             f"(the study: {spec})", experiments_cli.main,
             ["python", "-m", "studies.experiments", "run", str(spec), "--jobs",
              str(settings.jobs), "--device", settings.device, "--progress-seconds", "15"])
    interpolation = settings.out / "interpolation"
    pairs = [word for m in settings.methods for word in
             ("--pair", str(settings.run_dir(m, "offline")), str(settings.run_dir(m, "online")))]
    labels = [word for m in settings.methods for word in ("--label", f"{NAMES[m]} → SAC")]
    run_step("reward along the lines offline -> online", interpolate.main,
             ["python", "-m", "landscape.interpolate", *pairs, *labels,
              "--points", str(settings.points), "--episodes", str(settings.episodes),
              "--seed", str(settings.seed), "--device", settings.device,
              "--out", str(interpolation)])
    run_step("drop at transfer and regret", metrics.main,
             ["python", "-m", "smac_core.metrics",
              *(str(settings.run_dir(m, "online")) for m in settings.methods)])
    found = findings(settings, interpolation)
    written = write_page(settings, found, interpolation)
    print("\n== what this run found")
    for finding in found:
        print(f"- {finding.describe()}")
    print(budget_note(settings))
    print(f"\nopen {written[0]} (interactive) or {written[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
