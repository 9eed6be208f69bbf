"""The typed configuration of a training run: ``RunConfig``, one field for every flag of
``python -m smac_core.train online|offline``.

``smac_core.train`` parses its command line into a ``RunConfig`` and runs it (``train.run``);
Python callers (dataset generation, scripts) build one directly. Both go through the same
check (``RunConfig.checked``: the same errors, naming the flags), and ``RunConfig.to_argv`` is
the one place that spells a configuration as flags (the command a run directory records, the
command a process launcher starts).

Light on purpose (standard library only; torch is imported only to resolve a device): command
lines and process launchers import it at once.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from smac_core.cli import check_seed, resolve_device
from smac_core.errors import SmacError
from smac_core.rundir import RUN_OWNER, require_tensorboard

PHASES = ("online", "offline")
ONLINE_ALGORITHMS = ("sac", "td3", "td3bc", "awr", "qam", "trqam")
OFFLINE_ALGORITHMS = ("smac", "calql", "cql", "iql", "td3bc", "qam", "trqam")
PHASE_ALGORITHMS = {"online": ONLINE_ALGORITHMS, "offline": OFFLINE_ALGORITHMS}
HANDOFF_RULES = ("matched", "inherit")  # the rules of smac_core.handoff.hand_over
OPTIMIZERS = ("muon", "adam")
TRAIN_MODULE = RUN_OWNER  # the trainer's module, which owns the run directories it writes
TRAIN_COMMAND = f"python -m {TRAIN_MODULE}"
DEFAULT_START_STEPS = 5_000  # CleanRL's SAC learning_starts; 0 when fine-tuning (--from)
# defaults that differ between the phases (a field left None takes its phase's)
PHASE_DEFAULTS = {"steps": {"online": 100_000, "offline": 1_000_000},
                  "checkpoint_every": {"online": 50_000, "offline": 100_000}}
# fields that are flags of one phase only
ONLINE_ONLY = ("from_checkpoint", "handoff", "mix", "start_steps", "buffer_size",
               "early_eval_every", "early_eval_until")
SEED_PLACEHOLDER = "{seed}"  # in --from with --seeds: each seed's own checkpoint
OFFLINE_ONLY = ("dataset", "optimizer", "normalize_obs")
FLAG_NAMES = {"from_checkpoint": "--from", "overrides": "--set"}  # others: --name-with-dashes


def flag(name: str) -> str:
    """The command-line flag of a ``RunConfig`` field: ``eval_every`` -> ``--eval-every``."""
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["utd=4", "actor_hidden=[64,64]"]`` -> {"utd": 4, "actor_hidden": [64, 64]}.

    Values are read as JSON when they parse as JSON, else kept as strings.
    """
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SmacError(f"--set expects KEY=VALUE; got '{item}'")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def format_override(key: str, value: Any) -> str:
    """``KEY=VALUE`` that ``parse_overrides`` reads back as ``{key: value}``: JSON, or a plain
    string as is when it is not itself JSON."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return f"{key}={value}"
    return f"{key}={json.dumps(value, separators=(',', ':'))}"


@dataclass
class RunConfig:
    """A training run, as ``python -m smac_core.train PHASE`` flags (field ``x_y`` is flag
    ``--x-y``; ``from_checkpoint`` is ``--from``, ``overrides`` the ``--set KEY=VALUE`` values).

    ``steps`` and ``checkpoint_every`` left None take their phase's default. Online runs need
    ``env`` or ``from_checkpoint``; offline runs need ``dataset``.
    """

    phase: str                              # "online" | "offline"
    algo: str
    out: Path                               # the run directory
    env: str | None = None                  # task name or gymnasium id
    dataset: str | None = None              # offline: Minari id, task name or dataset file
    from_checkpoint: str | None = None      # online: offline run directory or checkpoint
    steps: int | None = None                # env steps online, gradient updates offline
    seed: int = 0
    device: str = "auto"                    # auto | cpu | cuda[:N]
    threads: int = 1                        # torch CPU threads
    eval_every: int = 10_000
    eval_episodes: int = 10
    checkpoint_every: int | None = None
    log_every: int = 1_000
    resume: bool = False
    tensorboard: bool = False               # metrics rows also as TensorBoard scalars
    overrides: dict[str, Any] = field(default_factory=dict)  # agent config values (--set)
    handoff: str = "matched"                # online --from: smac_core.handoff's rule
    mix: float = 0.5                        # online --from: offline fraction of each batch
    start_steps: int | None = None          # online: None is DEFAULT_START_STEPS, 0 with --from
    buffer_size: int | None = None          # online: None keeps every transition
    early_eval_every: int = 500             # online
    early_eval_until: int = 5_000           # online
    optimizer: str | None = None            # offline: None is the algorithm's config
    normalize_obs: bool = True              # offline
    seeds: tuple[int, ...] | None = None    # a seed-stacked run of these seeds

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.from_checkpoint is not None:
            self.from_checkpoint = str(self.from_checkpoint)
        if self.phase in PHASES:
            for name, defaults in PHASE_DEFAULTS.items():
                if getattr(self, name) is None:
                    setattr(self, name, defaults[self.phase])

    def checked(self) -> RunConfig:
        """This configuration with ``device`` resolved (``smac_core.cli.resolve_device``), or
        ``SmacError`` for a value out of range, naming its flag (argparse checks only the
        types of the command line's values)."""
        if self.phase not in PHASES:
            raise SmacError(f"phase must be online or offline; got {self.phase!r}")
        other = "offline" if self.phase == "online" else "online"
        defaults = RunConfig(self.phase, self.algo, self.out)
        for name in OFFLINE_ONLY if self.phase == "online" else ONLINE_ONLY:
            if getattr(self, name) != getattr(defaults, name):
                raise SmacError(f"{flag(name)} is a flag of {other} runs, not {self.phase} ones")
        for name, value, valid in (("algo", self.algo, PHASE_ALGORITHMS[self.phase]),
                                   ("handoff", self.handoff, HANDOFF_RULES),
                                   ("optimizer", self.optimizer, (None, *OPTIMIZERS))):
            if value not in valid:
                shown = ", ".join(v for v in valid if v is not None)
                raise SmacError(f"{flag(name)} {value!r} is not one of {shown} "
                                f"({self.phase} runs)")
        if not isinstance(self.overrides, dict):
            raise SmacError(f"--set values must be a mapping of names to values; got "
                            f"{self.overrides!r}")
        positive = {"--steps": self.steps, "--threads": self.threads,
                    "--eval-every": self.eval_every, "--eval-episodes": self.eval_episodes,
                    "--checkpoint-every": self.checkpoint_every, "--log-every": self.log_every}
        if self.phase == "online":
            positive |= {"--early-eval-every": self.early_eval_every}
            if self.buffer_size is not None:
                positive["--buffer-size"] = self.buffer_size
            if self.start_steps is not None and self.start_steps < 0:
                raise SmacError(f"--start-steps must be >= 0; got {self.start_steps}")
            if self.early_eval_until < 0:
                raise SmacError(f"--early-eval-until must be >= 0; got {self.early_eval_until}")
            if not 0.0 <= self.mix <= 1.0:
                raise SmacError(f"--mix must be in [0, 1]; got {self.mix}")
            if self.env is None and self.from_checkpoint is None:
                raise SmacError("online runs need --env (or --from, which brings its env)")
        elif self.dataset is None:
            raise SmacError("offline runs need --dataset")
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise SmacError(f"{name} must be a positive integer; got {value}")
        check_seed(self.seed)
        if self.seeds is not None:
            self._check_seeds()
        if self.tensorboard:
            require_tensorboard()
        return replace(self, device=resolve_device(self.device))

    def _check_seeds(self) -> None:
        seeds = self.seeds or ()
        if not seeds:
            raise SmacError("--seeds needs at least one seed, e.g. --seeds 0,1,2,3,4")
        for seed in seeds:
            check_seed(seed, "--seeds")
        if len(set(seeds)) != len(seeds):
            raise SmacError(f"--seeds lists a seed twice: {','.join(map(str, seeds))}")

    def for_seed(self, seed: int) -> RunConfig:
        """Seed ``seed``'s part of a ``--seeds`` run: the single-seed run that it reproduces,
        ``{seed}`` in ``--from`` and ``--out`` replaced by the seed; its run directory
        OUT/seed<seed> when ``--out`` has no ``{seed}``."""
        source, out = self.from_checkpoint, self.out.as_posix()
        return replace(self, seeds=None, seed=seed,
                       out=(Path(out.replace(SEED_PLACEHOLDER, str(seed)))
                            if SEED_PLACEHOLDER in out else self.out / f"seed{seed}"),
                       from_checkpoint=(source.replace(SEED_PLACEHOLDER, str(seed))
                                        if source is not None else None))

    def to_argv(self, spell: Collection[str] = ()) -> list[str]:
        """The flags of ``python -m smac_core.train`` that give this configuration: the phase,
        ``--algo``, then every field that differs from its default (``--out`` always), and the
        fields named in ``spell`` even at their default when they have a value (the experiment
        runner spells every value its spec gives, so that its recorded commands say them)."""
        argv = [self.phase, "--algo", self.algo]
        defaults = RunConfig(self.phase, self.algo, self.out)
        unknown = set(spell) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"not RunConfig fields: {sorted(unknown)}")
        for f in fields(self):
            name, value = f.name, getattr(self, f.name)
            if name in ("phase", "algo") or value is None or (
                    value == getattr(defaults, name) and name != "out" and name not in spell):
                continue
            if name == "overrides":
                argv += [word for key, v in value.items()
                         for word in (flag(name), format_override(key, v))]
            elif isinstance(value, bool):
                argv.append(flag(name) if value else f"--no-{flag(name)[2:]}")
            elif name == "seeds":
                argv += [flag(name), ",".join(map(str, value))]
            else:
                argv += [flag(name), str(value)]
        return argv

    def command(self) -> list[str]:
        """``["python -m smac_core.train", *to_argv()]``, as run directories record it."""
        return [TRAIN_COMMAND, *self.to_argv()]
