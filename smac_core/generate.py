"""D4RL-style MuJoCo datasets made locally: ``python -m smac_core.generate TASK`` (also
``python -m smac_core.data generate TASK``, an alias).

D4RL's protocol (Fu et al. 2020, section 5), reproduced for Hopper and Walker2d:

- train SAC online on the env (``smac_core.train online --algo sac``, so the generator is an
  ordinary run directory with a checkpoint series and exact resume);
- "medium": the policy at the first evaluation whose mean return reaches ``--medium-fraction``
  (default 1/3) of D4RL's expert reference return; its checkpoint is ``checkpoints/medium``;
- "medium-replay": every transition of SAC's replay buffer up to that evaluation, in order;
- "expert": the policy at the end of a longer run (``--expert-steps``, ``checkpoints/final``);
- "medium-expert": the medium and expert datasets concatenated;
- "random": uniform random actions in the action box.

Rollout datasets (random, medium, expert) hold ``--samples`` transitions (D4RL: 1M); actions of
the medium and expert policies are sampled from the stochastic SAC policy; the last episode is
cut at the sample count (a timeout). Every episode resets with a seed derived from ``--seed``,
so a dataset is a deterministic function of the seed and the flags.

Datasets are stored as Minari datasets ``local/<env>/<variant>-v0`` (``<env>`` = hopper or
walker2d) with D4RL's reference returns as ``ref_min_score``/``ref_max_score`` in their
metadata (where ``minari.get_normalized_score`` reads them) and, with the generator's run
directory and medium step, in the ``smac_import`` metadata that ``load_dataset`` returns.
The generator's run directory is ``$MINARI_DATASETS_PATH/../smac_generators/<env>/seed_<S>/``
(``generation.json`` there records the medium step and return); running ``generate`` again
with the same seed reuses and, for a larger ``--expert-steps``, extends it.

OGBench tasks (``cube-single-play``, ``cube-single-noisy``) are made by the package's scripted
oracles instead, in ``smac_core.ogbench_data`` (its flags: ``--episodes``, ``--noise``, ...).

Generation trains agents, so it stands above the data package (which it writes to) and the
trainer (``train.run``, which it calls with a ``RunConfig``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smac_core import ogbench_data, tasks, train
from smac_core.cli import (
    ArgumentParser,
    add_device_flag,
    check_seed,
    command_line,
    resolve_device,
)
from smac_core.data.dataset import TransitionDataset
from smac_core.data.normalization import ActionScaler, ObsNormalizer
from smac_core.errors import SmacError, cli_entry
from smac_core.files import atomic_write_text
from smac_core.runconfig import DEFAULT_START_STEPS, RunConfig, parse_overrides

if TYPE_CHECKING:
    from smac_core.runs import Trainer

GENERATE_MODULE = "smac_core.generate"

VARIANTS = ("random", "medium", "medium-replay", "expert", "medium-expert")
GENERATION_FILE = "generation.json"
# seed streams of each rollout dataset (episode resets, action draws), distinct from the
# training run's streams (runs.py uses 1-3)
ROLLOUT_STREAMS = {"random": (11, 21), "medium": (12, 22), "expert": (13, 23)}
POLICY_CHECKPOINT = {"medium": "medium", "expert": "final"}  # in the generator's checkpoints/


def generatable_tasks() -> dict[str, tasks.Task]:
    """env short name ("hopper") -> its MuJoCo task (env id and reference returns)."""
    return {t.name.split("-")[0]: t for t in tasks.TASKS.values() if t.family == "mujoco"}


def parse_target(target: str) -> tuple[str, str | None]:
    """"hopper" -> ("hopper", None); "hopper-medium-replay" -> ("hopper", "medium-replay")."""
    known = generatable_tasks()
    env, _, variant = target.partition("-")
    if env not in known or (variant and variant not in VARIANTS):
        names = [*known, *(f"{e}-{v}" for e in known for v in VARIANTS)]
        raise SmacError(f"cannot generate '{target}'; valid: {', '.join(names)}")
    return env, variant or None


def generator_dir(env: str, seed: int) -> Path:
    from smac_core.data.minari_store import store_root

    return store_root().parent / "smac_generators" / env / f"seed_{seed}"


# ---------------------------------------------------------------------------------------- rollouts
def rollout(task: tasks.Task, act: Callable[[np.ndarray], np.ndarray], samples: int, seed: int,
            stream: int) -> TransitionDataset:
    """``samples`` transitions of ``act`` (raw obs -> env action) in ``task``'s env.

    Episode ``k`` resets with ``derived_seed(seed, stream, k)``; the last episode is cut at
    ``samples`` (recorded as a truncation).
    """
    from smac_core.rollout import derived_seed

    env = tasks.make_env(task.name)
    episodes, collected, k = [], 0, 0
    while collected < samples:
        obs, _ = env.reset(seed=derived_seed(seed, stream, k))
        ep: dict[str, list] = {"observations": [obs], "actions": [], "rewards": [],
                               "terminals": [], "truncations": []}
        done = False
        while not done:
            action = act(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            collected += 1
            cut = collected == samples
            for key, value in (("observations", obs), ("actions", action), ("rewards", reward),
                               ("terminals", terminated), ("truncations", truncated or cut)):
                ep[key].append(value)
            done = terminated or truncated or cut
        episodes.append({key: np.asarray(value) for key, value in ep.items()})
        k += 1
    env.close()
    return TransitionDataset.from_episodes(episodes, env_id=task.name)


def policy_from_checkpoint(path: Path, scaler: ActionScaler,
                           action_seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """The stochastic SAC policy of a checkpoint as raw obs -> env action; seeds torch."""
    import torch

    from smac_core.algos import make_agent
    from smac_core.checkpoint import load_tensors

    tensors, meta = load_tensors(path)
    agent = make_agent(meta["algorithm"], meta["obs_dim"], meta["act_dim"], meta["config"])
    agent.load_networks(tensors)
    normalizer = ObsNormalizer.from_metadata(meta)
    torch.manual_seed(action_seed)

    def act(obs: np.ndarray) -> np.ndarray:
        obs_t = torch.as_tensor(normalizer(obs)[None])
        return scaler.to_env(agent.act(obs_t, deterministic=False)[0].numpy())

    return act


def replay_dataset(run_dir: Path, checkpoint: str, transitions: int, scaler: ActionScaler,
                   task: tasks.Task) -> TransitionDataset:
    """The first ``transitions`` transitions of a run's online replay buffer, in env units.

    The buffer stores no episode boundaries: a transition ends an episode when it terminated
    or when the next transition does not start from its next observation (the env was reset).
    """
    from smac_core.checkpoint import load_train_state

    state = load_train_state(run_dir / "checkpoints" / checkpoint)["online_buffer"]
    if state["size"] < transitions:
        raise SmacError(f"the replay buffer in {run_dir} holds {state['size']} transitions, "
                        f"fewer than the {transitions} of medium-replay")
    obs = state["observations"][:transitions].numpy()
    next_obs = state["next_observations"][:transitions].numpy()
    terminals = state["dones"][:transitions].numpy() > 0.5
    resets = np.append(np.any(next_obs[:-1] != obs[1:], axis=1), True)
    ends = terminals | resets
    return TransitionDataset(
        observations=obs, actions=scaler.to_env(state["actions"][:transitions].numpy()),
        rewards=state["rewards"][:transitions].numpy(), next_observations=next_obs,
        terminals=terminals, timeouts=ends & ~terminals, episode_ends=ends, env_id=task.name)


def concatenate(a: TransitionDataset, b: TransitionDataset) -> TransitionDataset:
    return TransitionDataset(**{k: np.concatenate([getattr(a, k), getattr(b, k)]) for k in (
        "observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
        "episode_ends")}, env_id=a.env_id)


# ---------------------------------------------------------------------------------------- SAC run
def train_generator(env: str, task: tasks.Task, args: argparse.Namespace,
                    needs_expert: bool) -> dict[str, Any]:
    """Run, resume or extend the generating SAC run; its generation.json record.

    Without ``needs_expert`` the run stops at the medium point (or is not run at all when an
    earlier call recorded it); with it, the run goes on to ``--expert-steps``.
    """
    run_dir = generator_dir(env, args.seed)
    record_path = run_dir / GENERATION_FILE
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    if "medium_step" in record and not needs_expert:
        return record
    steps = args.expert_steps if needs_expert else args.medium_max_steps
    threshold = args.medium_fraction * task.ref_max_score
    config = RunConfig("online", "sac", run_dir, env=task.name, steps=steps, seed=args.seed,
                       device=args.device, threads=args.threads, eval_every=args.eval_every,
                       early_eval_until=0, eval_episodes=args.eval_episodes, resume=True,
                       start_steps=args.start_steps, overrides=args.overrides)
    config.checked()  # bad flags before the command is shown
    print(f"the generating SAC run: {command_line(config.command())}", flush=True)
    from smac_core.checkpoint import save_checkpoint

    def on_eval(trainer: Trainer, step: int, row: dict[str, Any]) -> None:
        if "medium_step" in record or step == 0 or row["eval_return"] < threshold:
            return
        save_checkpoint(run_dir / "checkpoints" / "medium", trainer.agent.networks,
                        trainer.checkpoint_metadata())
        record.update(medium_step=step, medium_eval_return=row["eval_return"],
                      medium_threshold=threshold)
        atomic_write_text(record_path, json.dumps(record, indent=2))
        if not needs_expert:
            trainer.request_stop()

    status = train.run(config, on_eval)
    if status != 0:
        raise SmacError(f"the generating SAC run in {run_dir} was interrupted; run the same "
                        "command again to continue it")
    if "medium_step" not in record:
        raise SmacError(f"SAC did not reach the medium return {threshold:.1f} "
                        f"({args.medium_fraction:.3f} of the expert reference) within "
                        f"{steps} steps (see {run_dir / 'metrics.jsonl'}); raise "
                        "--medium-max-steps")
    return record


def generate(args: argparse.Namespace) -> list[Path]:
    """Make the requested variants; the paths of the Minari datasets written."""
    from minari.dataset.minari_storage import MinariStorage

    from smac_core.data.minari_store import write_minari
    from smac_core.rollout import derived_seed

    env, variant_in_name = parse_target(args.task)
    task = generatable_tasks()[env]
    variant = args.variant or variant_in_name or "all"
    variants = VARIANTS if variant == "all" else (variant,)
    for flag in ("samples", "medium_max_steps", "expert_steps"):
        if getattr(args, flag) < 1:
            raise SmacError(f"--{flag.replace('_', '-')} must be a positive integer")
    check_seed(args.seed)
    resolve_device(args.device)  # also when no SAC run (random data) uses it
    env_obj = tasks.make_env(task.name)
    scaler = ActionScaler.from_env(env_obj)
    run_dir = generator_dir(env, args.seed)

    record: dict[str, Any] = {}
    if set(variants) - {"random"}:
        record = train_generator(env, task, args, bool({"expert", "medium-expert"} & set(variants)))

    made: dict[str, TransitionDataset] = {}

    def dataset(name: str) -> TransitionDataset:
        if name in made:
            return made[name]
        if name in ROLLOUT_STREAMS:
            episode_stream, action_stream = ROLLOUT_STREAMS[name]
            action_seed = derived_seed(args.seed, action_stream, 0)
            if name == "random":
                rng = np.random.default_rng(action_seed)
                act = lambda _: rng.uniform(scaler.low, scaler.high).astype(np.float32)  # noqa: E731
            else:
                act = policy_from_checkpoint(run_dir / "checkpoints" / POLICY_CHECKPOINT[name],
                                             scaler, action_seed)
            made[name] = rollout(task, act, args.samples, args.seed, episode_stream)
        elif name == "medium-replay":
            # the buffer keeps every transition, so the final one holds the medium prefix too
            final = run_dir / "checkpoints" / "final"
            source = "final" if final.exists() else f"step_{record['medium_step']}"
            made[name] = replay_dataset(run_dir, source, record["medium_step"], scaler, task)
        else:
            made[name] = concatenate(dataset("medium"), dataset("expert"))
        return made[name]

    paths = []
    for name in variants:
        data = dataset(name)
        data.metadata.update(source=f"smac_core.generate (D4RL protocol), variant {name}",
                             generator_run=str(run_dir), seed=args.seed,
                             ref_min_score=task.ref_min_score, ref_max_score=task.ref_max_score,
                             **({"medium_step": record["medium_step"]} if record else {}))
        dataset_id = f"local/{env}/{name}-v0"
        path = write_minari(data, dataset_id, env_obj, overwrite=args.overwrite)
        MinariStorage.read(path / "data").update_metadata(
            {"ref_min_score": task.ref_min_score, "ref_max_score": task.ref_max_score,
             "algorithm_name": "SAC (smac_core), D4RL protocol"})
        returns = data.episode_returns()
        print(f"{dataset_id}: {data.num_episodes} episodes, {data.size} transitions, return "
              f"mean {returns.mean():.1f} (min {returns.min():.1f}, max {returns.max():.1f})")
        paths.append(path)
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=f"python -m {GENERATE_MODULE}",
        description=__doc__.replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", help="hopper, walker2d, or ENV-VARIANT (e.g. hopper-medium-replay); "
                                "or an OGBench task (cube-single-play, cube-single-noisy: "
                                "python -m smac_core.generate cube-single-play --help)")
    p.add_argument("--variant", choices=(*VARIANTS, "all"),
                   help="what to make (default: the variant in TASK, else all)")
    p.add_argument("--seed", type=int, default=0, help="seeds training and rollouts (default: 0)")
    p.add_argument("--samples", type=int, default=1_000_000,
                   help="transitions of the random/medium/expert datasets (default: 1000000, "
                        "as D4RL)")
    p.add_argument("--medium-max-steps", type=int, default=1_000_000,
                   help="SAC env steps allowed to reach the medium return (default: 1000000)")
    p.add_argument("--expert-steps", type=int, default=1_000_000,
                   help="SAC env steps of the expert policy (default: 1000000)")
    p.add_argument("--medium-fraction", type=float, default=1 / 3,
                   help="medium = first evaluation reaching this fraction of the expert "
                        "reference return (default: 1/3)")
    p.add_argument("--eval-every", type=int, default=10_000,
                   help="SAC steps between evaluations (default: 10000)")
    p.add_argument("--eval-episodes", type=int, default=5,
                   help="episodes per evaluation (default: 5)")
    p.add_argument("--start-steps", type=int,
                   help=f"SAC's initial random steps (default: the trainer's, "
                        f"{DEFAULT_START_STEPS})")
    add_device_flag(p, "where SAC trains")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a SAC config field (JSON value), repeatable")
    p.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    return p


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if ogbench_data.is_target(argv):  # OGBench tasks: made by the package's oracles
        return ogbench_data.main(argv)
    args = build_parser().parse_args(argv)
    args.overrides = parse_overrides(args.overrides)
    generate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
