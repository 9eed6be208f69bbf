"""Update throughput against CORL's single-file reference implementations (issue 12: every
update at >= 1.0x the reference implementation for the same algorithm and the same work).

    python benchmarks/bench_corl.py --corl DIR [--seconds 10] [--round 0.25]
                                    [--algos iql,sac,td3bc,calql,cql]

``DIR`` is the root of a checkout of https://github.com/corl-team/CORL (nothing of CORL is
copied into this repository). Its files are imported unchanged, by path, with stand-in modules
for the imports an update does not use (``d4rl``, ``gym``, ``pyrallis``, ``wandb``, ``tqdm``:
every function of a stand-in raises if called); the stand-ins are in ``sys.modules`` only while
a CORL file is being imported. Pairs (ours -> CORL's file and class):

- ``iql`` -> ``algorithms/offline/iql.py``, ``ImplicitQLearning.train``
- ``sac`` -> ``algorithms/offline/sac_n.py``, ``SACN.update`` with ``num_critics=2``
- ``td3bc`` -> ``algorithms/offline/td3_bc.py``, ``TD3_BC.train``
- ``calql`` -> ``algorithms/finetune/cal_ql.py``, ``CalQL.train``
- ``cql`` -> ``algorithms/offline/cql.py``, ``ContinuousCQL.train``

Each pair is configured for the same work: the same network widths and depths (ours set to
CORL's where CORL's are fixed in its code, CORL's set to ours where its ``TrainConfig`` has the
knob), batch 256, 2 critics, 10 sampled actions per proposal for CQL/CalQL, the same target
backup; the differences that remain are printed in the table's notes (``PAIRS``). CORL's agents
are built here from their classes the way their ``train(config)`` builds them, with their
``TrainConfig`` defaults otherwise. Our agents are built by ``bench_updates.prepared_agent``
(Hopper sizes: obs 11, act 3; offline agents prepared on a random 10k-transition dataset), which
also samples the batches: both agents of a pair get the same synthetic batches in the same order
(CORL's as its replay buffer returns them: ``[s, a, r (B, 1), s', done (B, 1)]``, plus the
returns-to-go ``(B, 1)`` for CalQL).

Measurement: one torch thread; after 10 warm-up updates each, the agents take turns in
interleaved rounds of ``--round`` seconds (ours, CORL's, ours, ...; ``bench_updates.measure``)
until each has had ``--seconds`` of the thread's CPU time (``time.thread_time``), so other
processes on a loaded machine slow both alike. Prints a markdown table: updates/s of each and
the ratio ours / CORL (>= 1.0x: ours is at least as fast).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from bench_updates import (
    ACT_DIM,
    BATCH_SIZE,
    OBS_DIM,
    PREPARED_BATCHES,
    WARMUP_UPDATES,
    Contender,
    machine_description,
    measure,
    prepared_agent,
)

from smac_core.data.buffers import Batch
from smac_core.errors import SmacError, cli_entry

STUBBED_MODULES = ("d4rl", "gym", "gym.wrappers", "pyrallis", "wandb", "tqdm")
MAX_ACTION = 1.0  # Hopper's action bound
IQL_MAX_STEPS = 1_000_000  # CORL's IQL TrainConfig.max_timesteps: its actor lr's cosine horizon


def _unavailable(name: str) -> Callable[..., Any]:
    def stand_in(*args: Any, **kwargs: Any) -> Any:
        raise SmacError(f"bench_corl: {name} is a stand-in (the benchmark times updates only)")
    return stand_in


def stub_modules() -> dict[str, types.ModuleType]:
    """Minimal stand-ins for the CORL files' imports that an update never uses: what their
    module level needs (``gym.Env`` in annotations, ``@pyrallis.wrap()`` on ``train``), and
    functions that raise if called."""
    gym = types.ModuleType("gym")
    gym.Env = type("Env", (), {})
    gym.make = _unavailable("gym.make")
    wrappers = types.ModuleType("gym.wrappers")
    wrappers.TransformObservation = _unavailable("gym.wrappers.TransformObservation")
    wrappers.TransformReward = _unavailable("gym.wrappers.TransformReward")
    gym.wrappers = wrappers
    d4rl = types.ModuleType("d4rl")
    d4rl.qlearning_dataset = _unavailable("d4rl.qlearning_dataset")
    pyrallis = types.ModuleType("pyrallis")
    pyrallis.wrap = lambda *args, **kwargs: (lambda fn: fn)
    pyrallis.dump = _unavailable("pyrallis.dump")
    wandb = types.ModuleType("wandb")
    wandb.init = _unavailable("wandb.init")
    wandb.log = _unavailable("wandb.log")
    tqdm = types.ModuleType("tqdm")
    tqdm.trange = _unavailable("tqdm.trange")
    tqdm.tqdm = _unavailable("tqdm.tqdm")
    modules = {"gym": gym, "gym.wrappers": wrappers, "d4rl": d4rl, "pyrallis": pyrallis,
               "wandb": wandb, "tqdm": tqdm}
    assert set(modules) == set(STUBBED_MODULES)
    return modules


@contextmanager
def stubbed_imports() -> Iterator[None]:
    """``stub_modules()`` in ``sys.modules`` for the duration; the previous entries (a real
    ``tqdm``, say) are put back afterwards."""
    saved = {name: sys.modules.get(name) for name in STUBBED_MODULES}
    sys.modules.update(stub_modules())
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_corl_module(corl_dir: Path, relative_path: str, class_name: str) -> types.ModuleType:
    """Import ``corl_dir / relative_path`` unchanged (with ``stubbed_imports``) as the module
    ``_corl_<path>``; ``SmacError`` if the directory is not a CORL checkout or the file lacks
    ``class_name``."""
    corl_dir = Path(corl_dir)
    if not corl_dir.is_dir():
        raise SmacError(f"--corl {corl_dir}: no such directory (give the root of a checkout of "
                        "https://github.com/corl-team/CORL)")
    path = corl_dir / relative_path
    if not path.is_file():
        raise SmacError(f"--corl {corl_dir} is not a CORL checkout: it has no {relative_path} "
                        "(give the repository root of https://github.com/corl-team/CORL, the "
                        "directory that holds algorithms/offline/ and algorithms/finetune/)")
    name = "_corl_" + relative_path.removesuffix(".py").replace("/", "_").replace(".", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        with stubbed_imports():
            spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise SmacError(f"cannot import CORL's {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(getattr(module, class_name, None), type):
        sys.modules.pop(name, None)
        raise SmacError(f"CORL's {path} defines no class {class_name} (a CORL version this "
                        "benchmark does not know)")
    return module


# ---------------------------------------------------------------------- CORL's agents
# Each builder constructs CORL's agent from its module's classes as its train(config) does,
# TrainConfig defaults except where noted (to give the same work as ours), and returns the
# bound method of one update.

CorlUpdate = Callable[[list[torch.Tensor]], Any]


def adam(module: torch.nn.Module, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr)


def build_corl_iql(m: types.ModuleType) -> CorlUpdate:
    cfg = m.TrainConfig()
    q, v = m.TwinQ(OBS_DIM, ACT_DIM), m.ValueFunction(OBS_DIM)
    actor = m.GaussianPolicy(OBS_DIM, ACT_DIM, MAX_ACTION, dropout=cfg.actor_dropout)
    agent = m.ImplicitQLearning(
        max_action=MAX_ACTION, actor=actor, actor_optimizer=adam(actor, cfg.actor_lr),
        q_network=q, q_optimizer=adam(q, cfg.qf_lr), v_network=v,
        v_optimizer=adam(v, cfg.vf_lr), discount=cfg.discount, tau=cfg.tau, device="cpu",
        beta=cfg.beta, iql_tau=cfg.iql_tau, max_steps=cfg.max_timesteps)
    return agent.train


def build_corl_sac_n(m: types.ModuleType) -> CorlUpdate:
    cfg = m.TrainConfig()
    actor = m.Actor(OBS_DIM, ACT_DIM, cfg.hidden_dim, cfg.max_action)
    critic = m.VectorizedCritic(OBS_DIM, ACT_DIM, cfg.hidden_dim, num_critics=2)
    agent = m.SACN(actor=actor, actor_optimizer=adam(actor, cfg.actor_learning_rate),
                   critic=critic, critic_optimizer=adam(critic, cfg.critic_learning_rate),
                   gamma=cfg.gamma, tau=cfg.tau, alpha_learning_rate=cfg.alpha_learning_rate,
                   device="cpu")
    return agent.update


def build_corl_td3_bc(m: types.ModuleType) -> CorlUpdate:
    cfg = m.TrainConfig()
    actor = m.Actor(OBS_DIM, ACT_DIM, MAX_ACTION)
    critic_1, critic_2 = m.Critic(OBS_DIM, ACT_DIM), m.Critic(OBS_DIM, ACT_DIM)
    agent = m.TD3_BC(
        max_action=MAX_ACTION, actor=actor, actor_optimizer=adam(actor, 3e-4),
        critic_1=critic_1, critic_1_optimizer=adam(critic_1, 3e-4), critic_2=critic_2,
        critic_2_optimizer=adam(critic_2, 3e-4), discount=cfg.discount, tau=cfg.tau,
        device="cpu", policy_noise=cfg.policy_noise * MAX_ACTION,
        noise_clip=cfg.noise_clip * MAX_ACTION, policy_freq=cfg.policy_freq, alpha=cfg.alpha)
    return agent.train


def build_corl_conservative(class_name: str) -> Callable[[types.ModuleType], CorlUpdate]:
    """CalQL (``finetune/cal_ql.py``) or ContinuousCQL (``offline/cql.py``): both critics with 2
    hidden layers (ours; CQL's TrainConfig has 3 for critic 1 and builds critic 2 with the
    default 2), the max target backup (ours; CORL's CalQL configs), alpha_cql 5 and the gap
    clipped at -200 (ours; CORL's CalQL configs clip at -200)."""

    def build(m: types.ModuleType) -> CorlUpdate:
        cfg = m.TrainConfig()
        critic_1, critic_2 = (m.FullyConnectedQFunction(OBS_DIM, ACT_DIM, cfg.orthogonal_init,
                                                        n_hidden_layers=2) for _ in range(2))
        actor_kwargs = ({"log_std_multiplier": cfg.policy_log_std_multiplier}
                        if hasattr(cfg, "policy_log_std_multiplier") else {})
        actor = m.TanhGaussianPolicy(OBS_DIM, ACT_DIM, MAX_ACTION,
                                     orthogonal_init=cfg.orthogonal_init, **actor_kwargs)
        agent = getattr(m, class_name)(
            critic_1=critic_1, critic_2=critic_2,
            critic_1_optimizer=adam(critic_1, cfg.qf_lr),
            critic_2_optimizer=adam(critic_2, cfg.qf_lr),
            actor=actor, actor_optimizer=adam(actor, cfg.policy_lr), discount=cfg.discount,
            soft_target_update_rate=cfg.soft_target_update_rate, device="cpu",
            target_entropy=-float(ACT_DIM), alpha_multiplier=cfg.alpha_multiplier,
            use_automatic_entropy_tuning=cfg.use_automatic_entropy_tuning,
            backup_entropy=cfg.backup_entropy, policy_lr=cfg.policy_lr, qf_lr=cfg.qf_lr,
            bc_steps=cfg.bc_steps, target_update_period=cfg.target_update_period,
            cql_n_actions=10, cql_importance_sample=cfg.cql_importance_sample,
            cql_lagrange=cfg.cql_lagrange, cql_target_action_gap=cfg.cql_target_action_gap,
            cql_temp=cfg.cql_temp, cql_alpha=5.0, cql_max_target_backup=True,
            cql_clip_diff_min=-200.0, cql_clip_diff_max=math.inf)
        return agent.train

    return build


def corl_batch(batch: Batch, returns_to_go: bool) -> list[torch.Tensor]:
    """Our batch as CORL's replay buffers return it (rewards, dones and returns (B, 1))."""
    columns = [batch.observations, batch.actions, batch.rewards[:, None],
               batch.next_observations, batch.dones[:, None]]
    return [*columns, batch.returns_to_go[:, None]] if returns_to_go else columns


@dataclass(frozen=True)
class Pair:
    """One of our algorithms and CORL's implementation of it, configured for the same work."""

    corl_file: str
    corl_class: str
    build_corl: Callable[[types.ModuleType], CorlUpdate]
    notes: str                       # the differences in work that remain
    overrides: dict[str, Any] = field(default_factory=dict)  # our config
    returns_to_go: bool = False      # CORL's batch carries the Monte-Carlo returns
    iql_schedule: bool = False       # ours anneals the actor lr every update as CORL's does


DEEP = [256, 256, 256]
PAIRS: dict[str, Pair] = {
    "iql": Pair(
        "algorithms/offline/iql.py", "ImplicitQLearning", build_corl_iql,
        "same 2x256 networks (actor, twin Q, V) and cosine actor-lr step each update; ours: a "
        "state-dependent log-std head (one more 256x3 linear) where CORL has a log-std "
        "parameter, the twin Q as one batched matmul", iql_schedule=True),
    "sac": Pair(
        "algorithms/offline/sac_n.py", "SACN", build_corl_sac_n,
        "SAC-N with 2 critics; ours set to CORL's fixed 3x256 actor and critic; CORL does more: "
        "a second actor pass on s (alpha loss), a critic pass on random actions (logged "
        "ensemble std), critic weight gradients in the actor step (ours: frozen critic; its "
        "critic step zeroes them)", {"actor_hidden": DEEP, "critic_hidden": DEEP,
                                     "num_critics": 2}),
    "td3bc": Pair(
        "algorithms/offline/td3_bc.py", "TD3_BC", build_corl_td3_bc,
        "same 2x256 networks, policy delay 2, actor step on Q1 only; CORL: two critic modules "
        "with an Adam each, ours a 2-member ensemble (batched matmul) with one Adam; CORL's "
        "actor step also computes Q1's weight gradients (ours: frozen critic; the critic step "
        "zeroes them)"),
    "calql": Pair(
        "algorithms/finetune/cal_ql.py", "CalQL", build_corl_conservative("CalQL"),
        "ours set to CORL's fixed 3x256 actor (CORL: one 256x6 head, ours 2 of 256x3), critics "
        "2x256 (CORL q_n_hidden_layers=2); both: max backup over 10 next actions, 3x10 sampled "
        "actions, clip -200, MC floor; CORL records autograd graphs for the backup and "
        "sampled-action actor passes and the target critics (never backpropagated), computes "
        "critic weight gradients in the actor step (ours: frozen critic) and logs more (Q std "
        "over 31 values, bound rates)", {"actor_hidden": DEEP}, returns_to_go=True),
    "cql": Pair(
        "algorithms/offline/cql.py", "ContinuousCQL", build_corl_conservative("ContinuousCQL"),
        "as CalQL without the floor: ours set to CORL's fixed 3x256 actor, both critics 2x256 "
        "(CORL's train() gives critic 1 q_n_hidden_layers=3 and critic 2 the default 2), max "
        "backup, clip -200; CORL records autograd graphs it never backpropagates, computes "
        "critic weight gradients in the actor step (ours: frozen critic) and logs more",
        {"actor_hidden": DEEP}),
}


def corl_contender(label: tuple[str, ...], update: CorlUpdate,
                   batches: list[list[torch.Tensor]]) -> Contender:
    """CORL's ``update`` over ``batches`` in turn, warmed up."""
    done = [0]

    def step() -> None:
        update(batches[done[0] % len(batches)])
        done[0] += 1

    for _ in range(WARMUP_UPDATES):
        step()
    return Contender(label, step)


def our_contender(label: tuple[str, ...], agent: Any, batches: list[Batch]) -> Contender:
    """Our ``agent.update`` over ``batches`` in turn, warmed up."""
    done = [0]

    def step() -> None:
        agent.update(batches[done[0] % len(batches)])
        done[0] += 1

    for _ in range(WARMUP_UPDATES):
        step()
    return Contender(label, step)


def build_pair(algo: str, corl_dir: Path) -> tuple[Contender, Contender]:
    """Our agent and CORL's for ``algo``, on the same ``PREPARED_BATCHES`` batches."""
    pair = PAIRS[algo]
    module = load_corl_module(corl_dir, pair.corl_file, pair.corl_class)
    agent, batches = prepared_agent(algo, torch.device("cpu"), pair.overrides)
    if pair.iql_schedule:
        agent.plan_updates(IQL_MAX_STEPS)
    torch.manual_seed(0)
    update = pair.build_corl(module)
    theirs = [corl_batch(b, pair.returns_to_go) for b in batches]
    return (our_contender((algo, "ours"), agent, batches),
            corl_contender((algo, "corl"), update, theirs))


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corl", type=Path, required=True,
                        help="root of a checkout of https://github.com/corl-team/CORL")
    parser.add_argument("--algos", default=",".join(PAIRS),
                        help="comma-separated pairs to time (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="thread CPU seconds of updates per agent (default 10)")
    parser.add_argument("--round", type=float, default=0.25,
                        help="seconds of one agent's turn in the interleaved rounds (default 0.25)")
    args = parser.parse_args(argv)
    algos = [a for a in args.algos.split(",") if a]
    unknown = [a for a in algos if a not in PAIRS]
    if unknown or not algos:
        raise SmacError(f"--algos takes some of {list(PAIRS)}; got {args.algos!r}")
    if args.seconds <= 0 or args.round <= 0:
        raise SmacError(f"--seconds and --round must be positive; got {args.seconds}, "
                        f"{args.round}")
    for algo in algos:  # refuse a bad --corl before anything is timed
        load_corl_module(args.corl, PAIRS[algo].corl_file, PAIRS[algo].corl_class)
    torch.set_num_threads(1)

    print(f"Updates/s at batch {BATCH_SIZE}, obs {OBS_DIM}, act {ACT_DIM}, CPU "
          f"({machine_description([torch.device('cpu')])}), clock: thread CPU time; "
          f"interleaved rounds of {args.round} s, {args.seconds} s per agent, "
          f"{PREPARED_BATCHES} synthetic batches shared by both agents of a pair\n", flush=True)
    rows = []
    for algo in algos:
        ours, theirs = build_pair(algo, args.corl)
        measure([ours, theirs], torch.device("cpu"), args.seconds, args.round, time.thread_time)
        rows.append((algo, ours.rate, theirs.rate))
        print(f"{algo}: ours {ours.rate:.1f}/s, CORL {theirs.rate:.1f}/s, "
              f"{ours.rate / theirs.rate:.2f}x", file=sys.stderr, flush=True)
    print("| algorithm | ours updates/s | CORL updates/s | ours / CORL | CORL file | "
          "differences in work |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for algo, our_rate, their_rate in rows:
        pair = PAIRS[algo]
        print(f"| {algo} | {our_rate:.1f} | {their_rate:.1f} | {our_rate / their_rate:.2f}x | "
              f"`{pair.corl_file}` {pair.corl_class} | {pair.notes} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
