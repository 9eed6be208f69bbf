"""``python -m smac_core.data``: import offline RL files into the local Minari store, list it,
show one dataset.

    python -m smac_core.data import PATH --id NAMESPACE/NAME-vN --env ENV_ID [--reward binary]
        [--episode-ends auto|terminal|truncation]
    python -m smac_core.data list
    python -m smac_core.data show ID [--download]
    python -m smac_core.data generate TASK [--variant ...]   (D4RL-style hopper/walker2d data;
        an alias of python -m smac_core.generate)
    python -m smac_core.data subset SOURCE_ID --fraction F --id NEW_ID   (first episodes of one)
    python -m smac_core.data export ID PATH [--no-next-observations]   (as a D4RL hdf5 file)
"""

from __future__ import annotations

import argparse
import re
import runpy
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smac_core import tasks
from smac_core.data import TransitionDataset, load_dataset
from smac_core.errors import SmacError, cli_entry

if TYPE_CHECKING:
    import gymnasium as gym

GENERATE_MODULE = "smac_core.generate"  # the application-layer command `generate` runs


def import_env(env_name: str, reward: str | None) -> gym.Env:
    """The env an imported dataset is recorded with.

    A task name, or an env id and reward that are a task's (AdroitHandPen-v1 with a binary
    reward is pen-binary), give the task's env with its wrappers and time limit; any other env id
    its registered env, with the binary reward wrapper when ``reward`` is "binary".
    """
    from smac_core.binary_reward import BinaryReward

    task = tasks.find_task(env_name)
    if task is not None and reward not in (None, task.reward):
        raise SmacError(f"task '{task.name}' has a {task.reward} reward; drop --reward or give "
                        f"the env id {task.env_id}")
    reward = reward or "dense"
    task = task or tasks.find_task(env_id=env_name, reward=reward)
    if task is not None:
        return task.make_env()
    env = tasks.make_env(env_name)
    return BinaryReward(env) if reward == "binary" else env


def episode_ends(choice: str, env_name: str) -> str:
    """``--episode-ends``: "auto" is "truncation" for an env that never terminates
    (``tasks.never_terminates``), else "terminal" (the file's ``terminals`` are kept)."""
    if choice != "auto":
        return choice
    return "truncation" if tasks.never_terminates(env_name) else "terminal"


def run_import(args: argparse.Namespace) -> int:
    from smac_core.binary_reward import BinaryReward
    from smac_core.data.formats import read_file
    from smac_core.data.minari_store import write_minari
    from smac_core.data.rewards import relabel_binary

    env = import_env(args.env, args.reward)
    ends = episode_ends(args.episode_ends, args.env)
    dataset = read_file(args.path, ignore_timeouts=args.ignore_timeouts, episode_ends=ends)
    if isinstance(env, BinaryReward):
        dataset = relabel_binary(dataset, env.spec.id)
    target = write_minari(dataset, args.id, env, overwrite=args.overwrite)
    print(f"wrote {args.id} to {target}: {dataset.num_episodes} episodes, {dataset.size} "
          f"transitions, {int(dataset.terminals.sum())} terminal ends (episode ends: {ends}); "
          f"{dataset.metadata['placeholder_next_observations']} last transitions without a "
          "next observation in the file keep their own observation as a placeholder")
    return 0


def first_episodes(dataset: TransitionDataset, fraction: float, dataset_id: str
                   ) -> TransitionDataset:
    """The dataset's first episodes holding at least ``fraction`` of its transitions (whole
    episodes; for a replay buffer stored in order, the early, narrower part of training)."""
    if not 0.0 < fraction <= 1.0:
        raise SmacError(f"--fraction must be in (0, 1], got {fraction}")
    episodes = list(dataset.episodes())
    lengths = np.cumsum([len(episode["actions"]) for episode in episodes])
    count = int(np.searchsorted(lengths, fraction * dataset.size - 1e-9)) + 1
    metadata = {k: v for k, v in dataset.metadata.items() if isinstance(v, str | int | float)}
    metadata.update(source=f"first {count} of the {len(episodes)} episodes of "
                           f"{dataset.dataset_id}", subset_of=str(dataset.dataset_id),
                    subset_fraction=fraction)
    return TransitionDataset.from_episodes(episodes[:count], env_id=dataset.env_id,
                                           dataset_id=dataset_id, metadata=metadata)


def run_subset(args: argparse.Namespace) -> int:
    from smac_core.data.minari_store import write_minari

    source = load_dataset(args.source)
    if source.env_id is None:
        raise SmacError(f"{args.source} records no env to store a subset with")
    subset = first_episodes(source, args.fraction, args.id)
    target = write_minari(subset, args.id, import_env(source.env_id, None),
                          overwrite=args.overwrite)
    print(f"wrote {args.id} to {target}: {subset.num_episodes} of {source.num_episodes} "
          f"episodes, {subset.size} of {source.size} transitions")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from smac_core.data.formats import write_d4rl_hdf5

    if args.path.exists() and not args.overwrite:
        raise SmacError(f"{args.path} exists; pass --overwrite to replace it")
    dataset = load_dataset(args.id)
    write_d4rl_hdf5(dataset, args.path, next_observations=args.next_observations)
    size = args.path.stat().st_size / 1e6
    print(f"wrote {args.path}: {dataset.num_episodes} episodes, {dataset.size} transitions of "
          f"{dataset.dataset_id or args.id} (env {dataset.env_id}), {size:.1f} MB; import it "
          f"with: python -m smac_core.data import {args.path} --id ID --env {dataset.env_id}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from smac_core.data.minari_store import local_dataset_ids, store_root

    ids = local_dataset_ids()
    print(f"{len(ids)} datasets in {store_root()}")
    for dataset_id in ids:
        s = load_dataset(dataset_id).summary()
        print(f"{dataset_id}  env={s['env_id']}  episodes={s['episodes']}  "
              f"transitions={s['transitions']}  return={s['return']['mean']:.2f}"
              f"+-{s['return']['std']:.2f}  obs_dim={s['obs_dim']}  act_dim={s['act_dim']}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    dataset = load_dataset(args.id, download=args.download)
    summary = dataset.summary()
    dataset_id = summary.pop("dataset_id") or args.id
    label = tasks.dataset_label(dataset_id, str(dataset.env_id))
    label += (" (its id: not the dataset of a task)" if label == dataset_id
              else " (the task whose dataset this is)")
    summary = {"dataset_id": dataset_id, "label": label,
               **summary, "env_id": tasks.describe_env(dataset.env_id),
               "observation_space": dataset.metadata.get("observation_space"),
               "action_space": dataset.metadata.get("action_space")}
    for key, value in summary.items():
        print(f"{key:18s}{_format(value)}")
    return 0


def _format(value: Any) -> str:
    if isinstance(value, dict):
        return "  ".join(f"{k}={_format(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m smac_core.data",
                                     description="Import offline RL files into the local "
                                                 "Minari store, list it, show one dataset,\n"
                                                 "generate, cut or export one.\n\n"
                                                 + __doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("import", help="import a D4RL hdf5 / DAPG pickle / AWAC .npy file")
    p.add_argument("path", help="the file to import (format detected from its content)")
    p.add_argument("--id", required=True, help="Minari dataset id, NAMESPACE/NAME-vN")
    p.add_argument("--env", required=True,
                   help=f"gymnasium env id or task ({', '.join(tasks.TASKS)}) of the data")
    p.add_argument("--reward", choices=("dense", "binary"), default=None,
                   help="binary: relabel with the Adroit success test (0 success, -1 otherwise)"
                        "; default: the task's reward, or the file's (dense) for an env id")
    p.add_argument("--ignore-timeouts", action="store_true",
                   help="hdf5: 'timeouts' mark time limits inside episodes, not episode ends")
    prefixes = ", ".join(tasks.NEVER_TERMINATING_ENV_PREFIXES)
    p.add_argument("--episode-ends", choices=("auto", "terminal", "truncation"), default="auto",
                   help="how the ends of the file's episodes are stored. terminal: the file's "
                        "'terminals' are terminal states (no bootstrap), other ends truncations;"
                        " truncation: every end is a truncation (the TD target bootstraps "
                        "there); auto (default): truncation for envs that never terminate (env "
                        f"ids starting with {prefixes} and their tasks: a demonstration stops, "
                        "it reaches no terminal state), else terminal")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset id")
    p.set_defaults(func=run_import)

    p = commands.add_parser("list", help="list the datasets in the local Minari store")
    p.set_defaults(func=run_list)

    p = commands.add_parser("show", help="summarise one dataset (Minari id, task name or file)")
    p.add_argument("id", help="Minari dataset id, task name or dataset file")
    p.add_argument("--download", action="store_true",
                   help="download the dataset from Minari's servers if it is not stored locally")
    p.set_defaults(func=run_show)

    p = commands.add_parser("subset", help="store the first episodes of a dataset as a new one "
                                           "(dataset size / coverage studies)")
    p.add_argument("source", help="Minari id or task name of the dataset to cut")
    p.add_argument("--fraction", type=float, required=True,
                   help="keep the first episodes holding at least this fraction of the "
                        "transitions, in (0, 1]")
    p.add_argument("--id", required=True, help="Minari id of the subset, NAMESPACE/NAME-vN")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset id")
    p.set_defaults(func=run_subset)

    p = commands.add_parser("export", help="write a dataset as a D4RL hdf5 file (flat arrays, "
                                           "gzip), which 'import' reads back")
    p.add_argument("id", help="Minari id or task name of the dataset to write")
    p.add_argument("path", type=Path, help="the hdf5 file to write")
    p.add_argument("--no-next-observations", dest="next_observations", action="store_false",
                   help="leave out 'next_observations' (about 40%% smaller; the last transition "
                        "of a truncated episode then reads back with its own observation as a "
                        "placeholder next observation)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=run_export)

    commands.add_parser("generate", add_help=False,
                        help=f"make D4RL-style hopper/walker2d datasets by training SAC: an alias "
                             f"of python -m {GENERATE_MODULE} (its flags: python -m "
                             f"{GENERATE_MODULE} --help)")
    return parser


def run_generate(argv: list[str]) -> int:
    """``generate ARGV``: ``python -m smac_core.generate ARGV`` run as that module, in this
    process. Generation trains agents: it stands above the data package, which does not import
    it; its exit status (argparse's 2 for a bad flag, 0 after ``--help``) is returned."""
    saved = sys.argv
    sys.argv = [f"python -m {GENERATE_MODULE}", *argv]
    try:
        with warnings.catch_warnings():  # runpy's note when a test has imported it already
            warnings.filterwarnings("ignore", re.escape(f"'{GENERATE_MODULE}' found in "
                                                        "sys.modules"), RuntimeWarning)
            runpy.run_module(GENERATE_MODULE, run_name="__main__", alter_sys=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv = saved
    return 0


@cli_entry
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["generate"]:  # its flags are smac_core.generate's
        return run_generate(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
