"""The main job on the embedded default, end to end: ``python -m studies.quickstart``.

1. import the embedded Adroit door human demonstrations as ``local/door/human-binary-v0`` (the
   ``door-binary`` task's dataset), unless the local Minari store already has it;
2. pre-train SMAC offline on it;
3. fine-tune the SMAC checkpoint online with SAC;
4. print the drop at transfer and the regret of the online run;
5. evaluate the reward along the line between the offline and the online checkpoint, with the
   valley verdict and a Plotly page.

Each step is one of the toolkit's commands run in-process with small budgets (flags below), all
of them resumable: rerunning the quick start continues where it stopped; the training runs are
``RunConfig``s run by ``smac_core.train.run``. Each step prints the command that does the same
from a shell. Every flag is checked before the first step runs.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from landscape import interpolate
from landscape.interpolate import interpolation_ts
from smac_core import metrics, train
from smac_core.cli import add_device_flag, check_seed, command_line, resolve_device
from smac_core.data import __main__ as data_cli
from smac_core.errors import SmacError, cli_entry
from smac_core.runconfig import RunConfig

DOOR_DATASET_ID = "local/door/human-binary-v0"


def embedded_door_file() -> Path:
    """The shipped D4RL hdf5 of the 25 door human demonstrations."""
    return Path(str(files("smac_core.data") / "embedded" / "door-v0_demos_clipped.hdf5"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m studies.quickstart",
        description="SMAC offline -> SAC online on the embedded door-binary data, then the "
                    "reward along the line between the two checkpoints.")
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"),
                        help="directory of the runs and the landscape (default runs/quickstart)")
    parser.add_argument("--offline-steps", type=int, default=2000,
                        help="SMAC gradient updates (default 2000)")
    parser.add_argument("--score-model-steps", type=int, default=2000,
                        help="training steps of SMAC's diffusion score model (default 2000)")
    parser.add_argument("--online-steps", type=int, default=2000,
                        help="SAC fine-tuning env steps (default 2000)")
    parser.add_argument("--episodes", type=int, default=5,
                        help="evaluation episodes per evaluation and per landscape point, 2 or "
                             "more (default 5)")
    parser.add_argument("--points", type=int, default=11,
                        help="points on the interpolation line, 3 or more (default 11)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every step (default 0)")
    add_device_flag(parser, "where every step runs")
    return parser


def check_flags(args: argparse.Namespace) -> str:
    """``SmacError`` naming the flag of any value that a step would refuse, before anything is
    trained (a bad value would otherwise surface minutes later, in the step that reads it); the
    resolved ``--device``."""
    for flag in ("--offline-steps", "--score-model-steps", "--online-steps"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value < 1:
            raise SmacError(f"{flag} must be a positive integer, got {value}")
    if args.episodes < 2:
        raise SmacError(f"--episodes must be 2 or more, got {args.episodes}: the drop at transfer "
                        "and the valley verdict need a standard error over episodes")
    interpolation_ts(args.points, *interpolate.build_parser().get_default("range"))
    check_seed(args.seed)
    if args.out.exists() and not args.out.is_dir():
        raise SmacError(f"--out {args.out} is a file, not a directory")
    return resolve_device(args.device)


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


def train_step(title: str, config: RunConfig) -> None:
    """A training run as a step: ``smac_core.train.run(config)``."""
    _step(title, command_line(config.command()), functools.partial(train.run, config))


def run_configs(args: argparse.Namespace, device: str) -> tuple[RunConfig, RunConfig]:
    """The SMAC offline run and the SAC fine-tuning of the flags, both resumable."""
    common = {"seed": args.seed, "device": device, "eval_episodes": args.episodes,
              "resume": True}
    offline = RunConfig("offline", "smac", args.out / "smac", dataset="door-binary",
                        steps=args.offline_steps, eval_every=max(1, args.offline_steps // 4),
                        overrides={"score_model": {"steps": args.score_model_steps}}, **common)
    online = RunConfig("online", "sac", args.out / "smac-sac", from_checkpoint=str(offline.out),
                       steps=args.online_steps,
                       early_eval_every=max(1, args.online_steps // 8),
                       eval_every=max(1, args.online_steps // 4), **common)
    return offline, online


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = check_flags(args)
    offline, online = run_configs(args, device)
    for config in (offline, online):
        config.checked()
    from smac_core.data.minari_store import local_dataset_ids  # after parsing: --help is quick

    if DOOR_DATASET_ID not in local_dataset_ids():
        run_step("import the embedded door demonstrations", data_cli.main,
                 ["python", "-m", "smac_core.data", "import", str(embedded_door_file()),
                  "--id", DOOR_DATASET_ID, "--env", "AdroitHandDoor-v1", "--reward", "binary",
                  "--ignore-timeouts"])
    run_step("the dataset", data_cli.main,
             ["python", "-m", "smac_core.data", "show", DOOR_DATASET_ID])
    train_step("SMAC offline pre-training", offline)
    train_step("SAC online fine-tuning from the SMAC checkpoint", online)
    run_step("drop at transfer and regret", metrics.main,
             ["python", "-m", "smac_core.metrics", str(online.out)])
    run_step("reward along the line offline -> online", interpolate.main,
             ["python", "-m", "landscape.interpolate", str(offline.out), str(online.out),
              "--points", str(args.points), "--episodes", str(args.episodes),
              "--seed", str(args.seed), "--device", device,
              "--out", str(args.out / "interpolation")])
    print(f"\nopen {args.out / 'interpolation' / 'interpolation.html'} for the interactive plot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
