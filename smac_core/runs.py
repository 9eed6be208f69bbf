"""The one training loop shared by offline and online runs: the env collector, evaluation,
checkpoints with resume state, signals. The files it writes are ``smac_core.rundir``'s format
(``config.json``, ``metrics.jsonl``, the evaluation schedule ``eval_steps``).

Offline and online runs differ only in their data source: an online run owns an
``EnvCollector`` that adds one env transition to the buffer before every update, an offline run
has none. One loop step = (collect one transition, online only) + one ``agent.update`` on a
sampled batch (none during the first ``start_steps`` steps of an online run, which explore with
uniform random actions).

Exact resume. ``train_state.pt`` holds the agent's optimizer states and counters, the replay
buffer that grows (the online one; an offline dataset is re-read, it never changes), the state
of every random generator (torch's global one, which agents draw from, the buffers'
``torch.Generator`` and the collector's numpy generator for exploration actions), the step,
the pending training-metric sums and the wall time. The env's state is restored by an
equivalent: training episode ``k`` is reset with a seed derived from (run seed, k), and the
checkpoint records k and the actions taken so far in the episode; resuming resets with the
same seed and replays the actions (MuJoCo and classic-control envs are deterministic), then
checks that the observation is bit-identical to the recorded one. On CPU a stopped and resumed
run therefore ends with the same parameters, bit for bit, as an uninterrupted one.

Evaluations (at the steps of ``rundir.eval_steps``): episode ``i`` of every evaluation resets
with the same seed, ``rollout.eval_episode_seed(run seed, i)``, so points of a curve are
comparable; evaluations follow ``smac_core.rollout``'s convention, which the
landscape engine shares (its point at a checkpoint reproduces the checkpoint's evaluation).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from smac_core.algos.base import Agent
from smac_core.checkpoint import load_tensors, load_train_state, save_checkpoint
from smac_core.data.buffers import Batch, ChunkBatch, MixedReplayBuffer, ReplayBuffer
from smac_core.data.normalization import ActionScaler, ObsNormalizer
from smac_core.errors import SmacError
from smac_core.metrics import standard_error
from smac_core.progress import Progress
from smac_core.rollout import EXPLORATION_STREAM, TRAIN_EPISODE_STREAM, derived_seed, rollout
from smac_core.rundir import (
    METRICS_FILE,
    TENSORBOARD_DIR,
    MetricsLog,
    RunSpec,
    eval_steps,
    write_config,
)
from smac_core.tasks import episode_score, make_env


def seed_everything(seed: int) -> None:
    """Seed torch's global generator (network init and every random draw inside agents)."""
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------- env side
def _policy_action(agent: Agent, normalizer: ObsNormalizer, obs: np.ndarray) -> np.ndarray:
    """The agent's stochastic (exploration) action in [-1, 1] for one raw observation: (act_dim,),
    or an action chunk (H * act_dim,) from an agent with ``horizon`` H > 1."""
    obs_t = torch.as_tensor(normalizer(obs)[None], device=agent.device)
    return agent.act(obs_t, deterministic=False)[0].cpu().numpy()


class EnvCollector:
    """The online data source: steps one training env and writes transitions to a buffer.

    Episode ``k`` is reset with ``derived_seed(seed, TRAIN_EPISODE_STREAM, k)``; the actions of
    the current episode are recorded so that ``load_state_dict`` can rebuild the env's state.
    An agent with action chunks (``horizon`` H > 1) is asked for a chunk every H steps of an
    episode, whose H actions are played open-loop (the rest of a chunk is dropped at an
    episode's end; ``pending`` is checkpointed). Each transition records whether its episode
    ended there (terminated or truncated), so that chunks never cross an episode end.
    """

    def __init__(self, env_name: str, seed: int, scaler: ActionScaler, normalizer: ObsNormalizer,
                 buffer: ReplayBuffer) -> None:
        self.env = make_env(env_name)
        self.seed, self.scaler, self.normalizer, self.buffer = seed, scaler, normalizer, buffer
        self.rng = np.random.default_rng(derived_seed(seed, EXPLORATION_STREAM, 0))
        self.episode_index = 0
        self.finished_returns: list[float] = []
        self._reset()

    def _reset(self) -> None:
        self.obs, _ = self.env.reset(seed=derived_seed(self.seed, TRAIN_EPISODE_STREAM,
                                                       self.episode_index))
        self.actions: list[np.ndarray] = []
        self.pending: list[np.ndarray] = []  # the rest of the current action chunk
        self.episode_return = 0.0

    def step(self, agent: Agent, random_action: bool) -> None:
        """One env step with the agent's stochastic action (or a uniform one); one transition."""
        if random_action:
            action = self.rng.uniform(-1.0, 1.0, self.scaler.low.shape).astype(np.float32)
        else:
            if not self.pending:
                chunk = _policy_action(agent, self.normalizer, self.obs)
                self.pending = list(chunk.reshape(-1, self.scaler.low.shape[0]))
            action = self.pending.pop(0)
        env_action = self.scaler.to_env(action)
        next_obs, reward, terminated, truncated, _ = self.env.step(env_action)
        self.buffer.add(self.normalizer(self.obs), action, float(reward),
                        self.normalizer(next_obs), bool(terminated),
                        episode_end=bool(terminated or truncated))
        self.actions.append(env_action)
        self.episode_return += float(reward)
        self.obs = next_obs
        if terminated or truncated:
            self.finished_returns.append(self.episode_return)
            self.episode_index += 1
            self._reset()

    def state_dict(self) -> dict[str, Any]:
        act_dim = self.scaler.low.shape[0]
        actions = np.stack(self.actions) if self.actions else np.zeros((0, act_dim), np.float32)
        return {"episode_index": self.episode_index, "actions": torch.from_numpy(actions),
                "obs": torch.from_numpy(np.array(self.obs)), "episode_return": self.episode_return,
                "finished_returns": list(self.finished_returns),
                "rng": self.rng.bit_generator.state,
                "pending": torch.from_numpy(np.array(self.pending, np.float32).reshape(
                    len(self.pending), act_dim))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Reset the current episode with its seed and replay its actions."""
        self.episode_index = int(state["episode_index"])
        self._reset()
        for action in state["actions"].numpy():
            self.obs, *_ = self.env.step(action)
            self.actions.append(action)
        if not torch.equal(torch.from_numpy(np.array(self.obs)), state["obs"]):
            raise SmacError("replaying the recorded actions did not reproduce the env state of "
                            "the checkpoint: the env is not deterministic, exact resume is "
                            "impossible")
        self.episode_return = float(state["episode_return"])
        self.finished_returns = list(state["finished_returns"])
        self.rng.bit_generator.state = state["rng"]
        self.pending = list(state["pending"].numpy()) if "pending" in state else []


def evaluate(agent: Agent, envs: list[gym.Env], env_name: str, normalizer: ObsNormalizer,
             scaler: ActionScaler, seed: int) -> dict[str, Any]:
    """Roll out the agent's deterministic policy for one episode in each of ``envs`` (made from
    task or env id ``env_name``); the body of a metrics.jsonl evaluation row.

    ``smac_core.rollout.rollout`` of ``agent.evaluation_policy`` (the ``DeterministicPolicy`` of
    the agent's actor, a flow agent's ``FlowPolicy``) with this run's normalisation and action
    bounds (what a checkpoint's policy is): episode ``i`` resets
    with ``eval_episode_seed(seed, i)``. An episode's success is ``info["success"]`` at any step
    (False when the env has no such key); its score is ``tasks.episode_score`` (None for envs
    without reference returns).
    """
    policy = agent.evaluation_policy(normalizer.mean, normalizer.std, scaler.low, scaler.high)
    returns, successes, _ = rollout(policy, envs, seed, device=agent.device)
    returns, successes = returns.tolist(), successes.tolist()
    scores = [episode_score(env_name, r, s) for r, s in zip(returns, successes, strict=True)]
    has_scores = all(s is not None for s in scores)
    return {"eval_returns": returns, "eval_successes": successes,
            "eval_scores": scores if has_scores else None,
            "eval_return": float(np.mean(returns)),
            "eval_score": float(np.mean(scores)) if has_scores else None,
            "eval_score_se": (float(standard_error(scores))
                              if has_scores and len(scores) > 1 else None)}


# ---------------------------------------------------------------------------------------- loop
def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "generator": generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Runs ``spec.steps`` loop steps of one agent and writes the run directory.

    ``sampler`` is what batches are drawn from (a ``ReplayBuffer`` or ``MixedReplayBuffer``);
    ``collector`` (online runs) writes to its own buffer, which is saved for resume.
    ``generator`` is the ``torch.Generator`` the buffers sample with. ``metadata`` holds the
    checkpoint metadata keys that do not change during the run (obs_dim, obs_mean, ...).
    ``on_eval(step, row)`` is called after each evaluation (used by dataset generation).
    """

    def __init__(self, spec: RunSpec, run_dir: Path, agent: Agent,
                 sampler: ReplayBuffer | MixedReplayBuffer,
                 generator: torch.Generator, normalizer: ObsNormalizer, scaler: ActionScaler,
                 metadata: dict[str, Any], collector: EnvCollector | None = None,
                 on_eval: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        self.spec, self.run_dir, self.agent, self.sampler = spec, run_dir, agent, sampler
        self.generator, self.normalizer, self.scaler = generator, normalizer, scaler
        self.metadata, self.collector, self.on_eval = metadata, collector, on_eval
        self.eval_envs = [make_env(spec.env) for _ in range(spec.eval_episodes)]
        self.log = MetricsLog(run_dir / METRICS_FILE)
        self.eval_at = eval_steps(spec)
        self.step = 0
        self.wall_time_before = 0.0  # seconds spent in earlier sessions of this run
        self.train_sums: dict[str, list[float]] = {}
        self.stop_signal: str | None = None
        self.stop_requested = False
        self._session_start = time.monotonic()
        self.label = ""  # prefixes its progress lines (a seed of a --seeds run: "seed 3: ")
        self.before_save: Callable[[], None] | None = None  # called before each checkpoint

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_metadata(self) -> dict[str, Any]:
        return {"algorithm": self.spec.algorithm, "phase": self.spec.phase,
                "config": self.agent.config.to_dict(), "step": self.step, "env": self.spec.env,
                "dataset_id": self.spec.dataset_id, "seed": self.spec.seed,
                "from_checkpoint": self.spec.from_checkpoint,
                "from_algorithm": self.spec.from_algorithm, **self.metadata}

    def train_state(self) -> dict[str, Any]:
        return {"agent": self.agent.state_dict(), "step": self.step,
                "wall_time": self.wall_time(), "train_sums": self.train_sums,
                "online_buffer": self.collector.buffer.state_dict() if self.collector else None,
                "collector": self.collector.state_dict() if self.collector else None,
                "rng": _rng_state(self.generator)}

    def save(self, name: str) -> Path:
        if self.before_save is not None:
            self.before_save()
        return save_checkpoint(self.run_dir / "checkpoints" / name, self.agent.networks,
                               self.checkpoint_metadata(), self.train_state())

    def restore(self, checkpoint: Path) -> None:
        """Continue from ``checkpoint`` exactly where it was written."""
        tensors, _ = load_tensors(checkpoint)
        state = load_train_state(checkpoint)
        try:
            self.agent.load_networks(tensors)
            self.agent.load_state_dict(state["agent"])
            if self.collector:
                self.collector.buffer.load_state_dict(state["online_buffer"])
                self.collector.load_state_dict(state["collector"])
            _set_rng_state(state["rng"], self.generator)
            self.step = int(state["step"])
            self.wall_time_before = float(state["wall_time"])
            self.train_sums = state["train_sums"]
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise SmacError(f"the resume state in {checkpoint} does not fit this run "
                            f"({type(exc).__name__}: {exc})") from exc

    # ------------------------------------------------------------------ loop
    def wall_time(self) -> float:
        return self.wall_time_before + time.monotonic() - self._session_start

    def request_stop(self) -> None:
        """Stop after the current step with a checkpoint (like SIGTERM, but exit status 0)."""
        self.stop_requested = True

    def _handle_signal(self, signum: int, frame: object) -> None:
        stopping = self.stop_signal is not None
        self.stop_signal = signal.Signals(signum).name
        if stopping:  # a second signal: stop now (a checkpoint being written is finished
            raise KeyboardInterrupt  # first, see smac_core.checkpoint)

    def _evaluate(self, progress: Progress) -> None:
        row = {"step": self.step, "phase": self.spec.phase, "wall_time": self.wall_time(),
               **evaluate(self.agent, self.eval_envs, self.spec.env, self.normalizer,
                          self.scaler, self.spec.seed)}
        self.log.append(row)
        progress.event(f"{self.label}eval return {row['eval_return']:.1f}"
                       + (f" score {row['eval_score']:.1f}" if row["eval_score"] is not None
                          else ""))
        if self.on_eval:
            self.on_eval(self.step, row)

    def _log_training(self, progress: Progress) -> None:
        if self.collector and self.collector.finished_returns:
            finished = self.collector.finished_returns
            self.train_sums["episode_return"] = [sum(finished), float(len(finished))]
            finished.clear()
        row = {"step": self.step, "phase": self.spec.phase, "wall_time": self.wall_time(),
               **{f"train/{k}": s / n for k, (s, n) in self.train_sums.items()}}
        self.train_sums = {}
        self.log.append(row)
        if "train/episode_return" in row:
            progress.note(f"{self.label}training episode return {row['train/episode_return']:.1f}")

    def next_batch(self) -> Batch | ChunkBatch | None:
        """Collect one transition (online) and sample the batch of this step's update; None
        during the first ``start_steps`` steps (no update)."""
        exploring = self.step < self.spec.start_steps
        if self.collector:
            self.collector.step(self.agent, random_action=exploring)
        if exploring:
            return None
        horizon = getattr(self.agent, "horizon", 1)  # action chunks: H transitions each
        return (self.sampler.sample(self.agent.update_batch_size) if horizon == 1 else
                self.sampler.sample_chunks(self.agent.update_batch_size, horizon))

    def end_step(self, metrics: dict[str, float] | None) -> None:
        """Count this step's update metrics (None: no update) into the training sums; one
        loop step done."""
        for k, v in (metrics or {}).items():
            total, count = self.train_sums.get(k, [0.0, 0.0])
            self.train_sums[k] = [total + float(v), count + 1.0]
        self.step += 1

    def _one_step(self) -> None:
        batch = self.next_batch()
        self.end_step(None if batch is None else self.agent.update(batch))

    def resume(self, resume_from: Path | None) -> bool:
        """Load the resume state (when ``resume_from``); False when that run already finished
        (nothing to do: said on stderr)."""
        if resume_from is None:
            return True
        self.restore(resume_from)
        if self.step >= self.spec.steps and resume_from.name == "final":
            print(f"{self.run_dir} already finished at step {self.step}; nothing to do "
                  "(a larger --steps continues it)", file=sys.stderr)
            return False
        return True

    def start(self, resumed: bool, progress: Progress) -> None:
        """Before the first loop step of this session: drop the metrics rows logged after the
        checkpoint resumed from (all rows for a fresh run, ``resumed`` False), rewrite
        config.json, open TensorBoard, evaluate step 0 of a fresh run."""
        last_kept = self.step if resumed else -1
        self.log.truncate_after(last_kept)
        write_config(self.run_dir, self.spec)
        self._session_start = time.monotonic()
        if self.spec.tensorboard:
            self.log.open_tensorboard(self.run_dir / TENSORBOARD_DIR, last_kept)
        if not resumed and 0 in self.eval_at:
            self._evaluate(progress)

    def after_step(self, progress: Progress) -> int | None:
        """After a loop step: log, evaluate, checkpoint when due; when asked to stop (or
        signalled) a checkpoint and the exit status, else None."""
        if self.step % self.spec.log_every == 0:
            self._log_training(progress)
        if self.step in self.eval_at:
            self._evaluate(progress)
        if self.stop_requested:
            self.save(f"step_{self.step}")
            return 0
        if self.stop_signal:
            path = self.save(f"step_{self.step}")
            print(f"stopped by {self.stop_signal} at step {self.step}; checkpoint {path} "
                  "(continue with the same command and --resume)", file=sys.stderr)
            return 128 + signal.Signals[self.stop_signal]
        if self.step % self.spec.checkpoint_every == 0:
            self.save(f"step_{self.step}")
        return None

    def run(self, resume_from: Path | None = None) -> int:
        """Train to ``spec.steps``; 0 when finished or asked to stop, 128+signal when signalled.

        Metrics rows logged after the checkpoint resumed from (all rows, when there is none)
        are dropped first: they are logged again, once (in TensorBoard, ``--tensorboard``, a new
        event file purges them: ``rundir.TensorBoardLog``). config.json is rewritten with this
        command's spec once the resume state has loaded.
        """
        if not self.resume(resume_from):
            return 0
        previous = {s: signal.signal(s, self._handle_signal)
                    for s in (signal.SIGINT, signal.SIGTERM)}
        progress = Progress(self.spec.steps, f"{self.spec.phase} {self.spec.algorithm}",
                            initial=self.step)
        try:
            self.start(resume_from is not None, progress)
            while self.step < self.spec.steps:
                self._one_step()
                progress.update()
                status = self.after_step(progress)
                if status is not None:
                    return status
            self.save("final")
        except KeyboardInterrupt:
            name = self.stop_signal or "SIGINT"
            print(f"stopped by a second signal ({name}) at step {self.step} (continue with the "
                  "same command and --resume, from the latest checkpoint)", file=sys.stderr)
            return 128 + signal.Signals[name]
        finally:
            progress.close()
            self.log.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return 0
