"""The agent interface every algorithm implements, and helpers the algorithms share.

An agent owns its networks (``self.networks``: name -> ``nn.Module``, flattened to tensors named
"<name>.<param>") and optimizers (``self.optimizers``), acts on *normalised* observations with
actions in [-1, 1]^act_dim (the trainer maps them to the env's bounds), and learns from a
``Batch`` in ``update``. The networks named ``actor`` and ``critic`` have the same meaning in
every algorithm, which is what makes the offline -> online handoff and ``landscape`` generic.

An agent exposes its state (networks, ``state_dict``) and takes state back (``load_networks``,
``load_state_dict``, ``load_pretrained``) as tensors and plain data; it does not know the
checkpoint files: the trainer saves and loads them (``smac_core.checkpoint``), and hands
``prepare_offline`` the run's ``ArtifactStore`` for state an agent keeps across runs.

An update is written as gradient steps, ``gradient_step(optimizers, loss_fn, *inputs)``, on loss
functions that read only the networks and their inputs; the random draws and the inputs without
gradient a step needs (sampled noise, sampled actions, a frozen model's outputs) come from
methods marked ``per_seed``, called before the step. Written so, an update can be seed-stacked
(``smac_core.seeds``: the loss functions vmapped over S seeds' stacked networks, the
``per_seed`` methods run seed by seed on each seed's own random stream) with no change to it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from smac_core import optim
from smac_core.configs import build_config
from smac_core.data.buffers import BUFFER_FIELDS, Batch, ReplayBuffer
from smac_core.data.dataset import TransitionDataset
from smac_core.errors import SmacError
from smac_core.state import ArtifactStore, sub_state_dict
from smac_core.tasks import Task, find_task

TARGET_REDUCTIONS = ("min", "mean_minus_std")
LossAndMetrics = tuple[torch.Tensor, dict[str, torch.Tensor]]  # a loss function's result


@dataclass
class AgentConfig:
    """Hyperparameters shared by all algorithms; each algorithm subclasses this dataclass."""

    actor_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)
    gamma: float = 0.99
    batch_size: int = 256
    optimizer: str = "adam"  # "adam" | "muon": the kind given to smac_core.optim.make_optimizer

    def __post_init__(self) -> None:
        for name in ("actor_hidden", "critic_hidden"):
            sizes = getattr(self, name)
            check_config(len(sizes) >= 1 and min(sizes) >= 1, self,
                         f"{name} must be a non-empty list of layer sizes >= 1; got {list(sizes)}")
        check_config(0.0 <= self.gamma <= 1.0, self, f"gamma must be in [0, 1]; got {self.gamma}")
        check_config(self.batch_size >= 1, self, f"batch_size must be >= 1; got {self.batch_size}")
        for f in fields(self):  # every learning rate (0 freezes a network)
            if f.name.endswith("_lr"):
                check_config(getattr(self, f.name) >= 0.0, self,
                             f"{f.name} must be >= 0; got {getattr(self, f.name)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AgentConfig:
        """Build from a dict of user values: unknown keys and values of the wrong type or range
        are refused (``smac_core.configs.build_config``)."""
        return build_config(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ActorCriticConfig(AgentConfig):
    """The fields of every agent with a critic ensemble and target networks."""

    tau: float = 5e-3      # Polyak rate of the target networks
    num_critics: int = 2   # critic ensemble size

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.num_critics >= 1, self,
                     f"num_critics must be >= 1; got {self.num_critics}")
        check_config(0.0 < self.tau <= 1.0, self, f"tau must be in (0, 1]; got {self.tau}")


class Agent(ABC):
    """Networks, optimizers, acting and resume state. Subclasses implement ``update``."""

    name: ClassVar[str]
    config_class: ClassVar[type[AgentConfig]] = AgentConfig
    phases: ClassVar[frozenset[str]]

    def __init__(self, obs_dim: int, act_dim: int, config: AgentConfig,
                 device: str | torch.device = "cpu") -> None:
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self.device = torch.device(device)
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.updates = 0
        # True for the stacked agent of a seed-stacked run (smac_core.seeds), whose losses run
        # under torch.func.vmap: they then avoid what vmap cannot batch (custom autograd
        # Functions, oneDNN's private ops)
        self.seed_stacked = False
        # r' = reward_scale * r + reward_bias: the reward units the critic learns in. Offline
        # algorithms may pick them from the dataset (CalQL, IQL); an online agent started from a
        # checkpoint inherits them (``load_pretrained``), so the critic's units survive the handoff.
        self.reward_scale, self.reward_bias = 1.0, 0.0

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step (or UTD steps) on ``batch`` (``update_batch_size`` transitions),
        counted in ``self.updates``; returns scalar metrics for the log."""

    def prepare_offline(self, dataset: TransitionDataset, buffer: ReplayBuffer,
                        artifacts: ArtifactStore) -> None:
        """Work done once before offline updates start (SMAC trains its score model here, or
        loads it from ``artifacts``, the run's stored artifacts); nothing by default."""
        return None

    def plan_updates(self, total: int) -> None:
        """Told before the first update how many updates the run makes in all (offline:
        ``--steps``), for schedules over the run (IQL's actor lr); nothing by default."""
        return None

    # ------------------------------------------------------------------ shared
    def gradient_step(self, optimizers: Sequence[str], loss_fn: Callable[..., LossAndMetrics],
                      *inputs: Any, max_grad_norm: float | None = None
                      ) -> dict[str, torch.Tensor]:
        """One step of the named optimizers on ``loss, metrics = loss_fn(*inputs)``: zero their
        gradients, backpropagate the loss, clip the gradients of their parameters to a total
        norm of ``max_grad_norm`` (None: no clipping; ``nn.utils.clip_grad_norm_``), step them;
        returns the metrics.

        The unit that seed-stacked training (``smac_core.seeds``) replaces: there ``loss_fn``
        runs once for all seeds (``torch.func.vmap`` over stacked parameters and inputs), so a
        loss function draws no random numbers itself: a ``per_seed`` method prepares them.
        """
        loss, metrics = loss_fn(*inputs)
        for name in optimizers:
            self.optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_([p for name in optimizers
                                      for group in self.optimizers[name].param_groups
                                      for p in group["params"]], max_grad_norm)
        for name in optimizers:
            self.optimizers[name].step()
        return metrics

    def learning_rewards(self, batch: Batch) -> torch.Tensor:
        """The rewards the critic learns from, in its units: scale * r + bias, (B,)."""
        return self.reward_scale * batch.rewards + self.reward_bias

    @property
    def actor(self) -> nn.Module:
        return self.networks["actor"]

    @property
    def update_batch_size(self) -> int:
        """How many transitions the trainer samples for one ``update`` call."""
        return self.config.batch_size

    def make_optimizer(self, modules: list[nn.Module], lr: float) -> torch.optim.Optimizer:
        """One optimizer of kind ``config.optimizer`` ("adam" or "muon", see ``smac_core.optim``)
        over the trainable parameters of ``modules``; ``lr`` is Adam's."""
        return optim.make_optimizer(modules, lr, self.config.optimizer)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions in [-1, 1] for normalised observations: (B, obs_dim) -> (B, act_dim)."""
        if deterministic:
            return self.actor.deterministic(obs)
        out = self.actor(obs)
        return out[0] if isinstance(out, tuple) else out

    def evaluation_policy(self, obs_mean, obs_std, action_low, action_high) -> nn.Module:
        """The deterministic policy that evaluations roll out (``smac_core.rollout``): raw
        observation -> env action, on the agent's device. The actor's ``DeterministicPolicy``
        by default; flow agents return their flow (``smac_core.algos.flow.FlowPolicy``)."""
        from smac_core.nets import DeterministicPolicy

        return DeterministicPolicy.from_actor(self.actor, obs_mean, obs_std, action_low,
                                              action_high).to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """Optimizer states and counters (networks are saved separately, to safetensors)."""
        return {"optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.updates = int(state["updates"])

    def load_networks(self, tensors: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Load "<network>.<param>" tensors (``flat_state_dict`` of the networks, as checkpoints
        store them)."""
        for name, module in self.networks.items():
            sub = sub_state_dict(tensors, name)
            if not sub and not strict:
                continue
            try:
                module.load_state_dict(sub, strict=strict)
            except RuntimeError as exc:
                raise SmacError(f"cannot load network '{name}' of {self.name}: {exc}") from exc

    def load_pretrained(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        """Start from another agent's checkpoint: the network part of the offline -> online
        handoff, and all of the ``inherit`` rule.

        The default rule, ``matched`` (``smac_core.handoff.hand_over``, which calls this first),
        then makes the handed-over policy act at step 0 as the offline one did, whatever receives
        it: a stochastic actor's whole distribution is kept; a deterministic actor (TD3+BC) given
        to SAC or AWR gets a state-independent log-std of log 0.1 (TD3's exploration noise) instead
        of the fresh head; TD3 and TD3+BC take the mean and explore with their own noise. SAC's
        target entropy becomes the handed-over policy's entropy on the dataset's states and its
        initial temperature the value at which that entropy is stationary under the actor's loss,
        the same for every offline method (instead of inheriting SMAC's or CalQL's trained
        temperature and restarting IQL's and TD3+BC's at 1.0).

        Network by network, by name:

        - ``actor`` (and ``actor_target``): ``trunk.*`` and ``mu.*`` always, the deterministic
          part ``tanh(mu(trunk(s)))`` every actor shares, so a SAC actor hands over to TD3's
          deterministic actor through its mean; ``log_std.*`` when both actors have it (a
          deterministic actor handed to SAC keeps the fresh ``log_std`` head).
        - every other network the checkpoint has (``critic``, ``critic_target``, ``temperature``,
          ...) is copied whole: its parameter names and shapes must match (e.g. the critic
          ensemble sizes), else ``SmacError`` naming the first differing parameter.
        - a ``<name>_target`` the checkpoint lacks is re-synced from the loaded ``<name>``.
        - networks the checkpoint lacks otherwise (e.g. ``temperature`` after IQL) keep their
          fresh initialisation; networks only the checkpoint has (IQL's value) are not used.
        - the reward transform (``reward_scale``, ``reward_bias`` in the metadata) is kept, so the
          critic goes on learning in the units it was pre-trained in (CalQL's x10 + 5 on
          binary Adroit, IQL's MuJoCo rescaling), as the reference implementations fine-tune.
        """
        source_algo = metadata.get("algorithm", "checkpoint")
        if "exported_from" in metadata:
            raise SmacError(f"this {source_algo} checkpoint is a policy-only export (no critic); "
                            f"start from the full checkpoint it came from: "
                            f"{metadata['exported_from']['checkpoint']}")
        if not sub_state_dict(tensors, "actor"):
            raise SmacError(f"the {source_algo} checkpoint has no 'actor' network to start from")
        self.reward_scale = float(metadata.get("reward_scale", 1.0))
        self.reward_bias = float(metadata.get("reward_bias", 0.0))
        loaded = set()
        for name, module in self.networks.items():
            source = sub_state_dict(tensors, name)
            if not source:
                continue
            own = module.state_dict()
            optional = {k for k in own if k.startswith("log_std.")} \
                if name in ("actor", "actor_target") else set()
            missing = sorted(set(own) - set(source) - optional)
            if missing:
                raise SmacError(f"cannot start {self.name} from the {source_algo} checkpoint: "
                                f"it lacks parameter '{name}.{missing[0]}'")
            shared = [key for key in own if key in source]
            for key in shared:
                if source[key].shape != own[key].shape:
                    raise SmacError(
                        f"cannot start {self.name} from the {source_algo} checkpoint: parameter "
                        f"'{name}.{key}' has shape {tuple(source[key].shape)} there and "
                        f"{tuple(own[key].shape)} here (different network sizes or ensemble "
                        "size; set them to match)")
            module.load_state_dict({k: source[k] for k in shared}, strict=False)
            loaded.add(name)
        for name, module in self.networks.items():
            online_name = name.removesuffix("_target")
            if name != online_name and name not in loaded and online_name in loaded:
                module.load_state_dict(self.networks[online_name].state_dict(), strict=False)


AgentMethod = TypeVar("AgentMethod", bound=Callable[..., Any])


def per_seed(method: AgentMethod) -> AgentMethod:
    """Mark an agent method that prepares a gradient step's inputs: its random draws and the
    quantities without gradient that a loss function takes (sampled actions, a frozen model's
    outputs), as a dict of tensors. A seed-stacked agent (``smac_core.seeds``) runs it seed by
    seed, each seed's own agent on its own random stream, and stacks the results."""
    method.per_seed = True  # type: ignore[attr-defined]
    return method


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """theta_target <- (1 - tau) theta_target + tau theta_source."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, tau)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """``module``'s trainable parameters are constants for autograd inside the block
    (``requires_grad`` False, restored on exit).

    For a loss that trains another network through this one (the actor's loss through the
    critic): its backward then computes no gradients for these parameters, which their own
    optimizer would discard anyway (it zeroes them before its next step), only the gradients
    that flow through them to the inputs, with the same values.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def reduce_ensemble(q: torch.Tensor, reduction: str, std_weight: float = 1.0) -> torch.Tensor:
    """Pessimistic value of an ensemble's estimates: (N, B) -> (B,).

    ``"min"``: min_i Q_i (clipped double Q, TD3/SAC); ``"mean_minus_std"``: mean_i Q_i -
    std_weight * std_i Q_i (unbiased std; for N = 2 and std_weight = 1/sqrt(2) this is the min).
    """
    if reduction == "min":
        return q.min(dim=0).values
    return q.mean(dim=0) - std_weight * q.std(dim=0)


def split_batch(batch: Batch, parts: int) -> list[Batch]:
    """``parts`` consecutive minibatches of (nearly) equal size, split along the batch axis
    (the rewards' last; a seed-stacked batch, ``smac_core.seeds``, has a seed axis before it)."""
    axis = batch.rewards.dim() - 1
    columns = {k: torch.tensor_split(getattr(batch, k), parts, dim=axis) for k in BUFFER_FIELDS}
    return [Batch(**{k: columns[k][i] for k in BUFFER_FIELDS}) for i in range(parts)]


def scalar_metrics(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Scalar tensors -> floats with a single device synchronisation."""
    values = torch.stack([v.detach().float() for v in metrics.values()]).tolist()
    return dict(zip(metrics, values, strict=True))


def check_config(condition: bool, config: AgentConfig, message: str) -> None:
    """Raise a ``SmacError`` naming the config class when ``condition`` is false."""
    if not condition:
        raise SmacError(f"{type(config).__name__}: {message}")


def dataset_task(dataset: TransitionDataset) -> Task | None:
    """The registered task a dataset belongs to (by dataset id, else by env id), or None.

    Offline algorithms read per-task-family defaults (reward scale, conservatism) from it.
    """
    return (find_task(dataset_id=dataset.dataset_id or None)
            or find_task(env_id=dataset.env_id or None))
