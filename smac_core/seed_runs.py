"""``python -m smac_core.train {online,offline} ... --seeds 0,1,2,3,4 --out OUT``: the seeds of one
configuration trained in one process, their updates seed-stacked (``smac_core.seeds``).

Each seed k is the single-seed run ``RunConfig.for_seed(k)`` (``--seed k --out OUT/seed<k>``,
``{seed}`` in ``--from`` replaced by k): built as that run builds it (its agent, env, replay
buffer, generators), it writes that run's ordinary run directory, with that run's command in
its config.json, so every other command (``landscape``, ``--resume`` of the seed alone, the
experiment runner's collection) reads it as before.

Lockstep: one loop step is, seed by seed under the seed's own random stream
(``SeedStack.seed_rng``), one collected transition and the sampled batch; then one stacked update
of all seeds; then, seed by seed, its run's bookkeeping (training metrics, evaluations,
checkpoints, each with the seed's slice of the optimizer states, ``SeedStack.export_state``).
``--resume`` resumes every seed from its latest checkpoint; they must be at one step. A signal
stops all seeds at the same step, each with a checkpoint. An offline seed's agent prepares
itself as its single-seed run does (SMAC trains or loads its own score model), one seed after
another, before the loop starts.
"""

from __future__ import annotations

import functools
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

from smac_core.errors import SmacError
from smac_core.progress import Progress
from smac_core.runconfig import RunConfig
from smac_core.rundir import CONFIG_FILE, run_directory
from smac_core.runs import Trainer
from smac_core.seeds import SeedStack, rng_state


class SeedGroup:
    """The lockstep loop of the seeds' trainers around one ``SeedStack`` (module docstring)."""

    def __init__(self, trainers: list[Trainer], stack: SeedStack, seeds: list[int]) -> None:
        self.trainers, self.stack, self.seeds = trainers, stack, seeds
        self.stop_signal: str | None = None
        for k, (trainer, seed) in enumerate(zip(trainers, seeds, strict=True)):
            trainer.label = f"seed {seed}: "
            trainer.before_save = functools.partial(stack.export_state, k)

    def _handle_signal(self, signum: int, frame: object) -> None:
        stopping = self.stop_signal is not None
        self.stop_signal = signal.Signals(signum).name
        if stopping:  # a second signal: stop now
            raise KeyboardInterrupt

    def _resume(self, resume_from: list[Path | None]) -> bool:
        """Every seed's resume state; False when all seeds had finished already."""
        unfinished = []
        for k, (trainer, checkpoint) in enumerate(zip(self.trainers, resume_from, strict=True)):
            with self.stack.seed_rng(k):
                unfinished.append(trainer.resume(checkpoint))
        steps = {trainer.step for trainer in self.trainers}
        if len(steps) != 1 or len(set(unfinished)) != 1:
            at = ", ".join(f"seed {s} at step {t.step}" for s, t in zip(self.seeds, self.trainers,
                                                                          strict=True))
            raise SmacError(f"the seeds' run directories are at different steps ({at}); resume "
                            "them one by one (without --seeds) to the same step first")
        if any(checkpoint is not None for checkpoint in resume_from):
            self.stack.import_state()
        return unfinished[0]

    def run(self, resume_from: list[Path | None]) -> int:
        """Train every seed to ``--steps``; the exit status as ``Trainer.run``'s."""
        if not self._resume(resume_from):
            return 0
        first, total = self.trainers[0], self.trainers[0].spec.steps
        previous = {s: signal.signal(s, self._handle_signal)
                    for s in (signal.SIGINT, signal.SIGTERM)}
        progress = Progress(total, f"{first.spec.phase} {first.spec.algorithm} seeds "
                                   f"{','.join(map(str, self.seeds))}", initial=first.step)
        try:
            for k, (trainer, checkpoint) in enumerate(zip(self.trainers, resume_from,
                                                          strict=True)):
                with self.stack.seed_rng(k):
                    trainer.start(checkpoint is not None, progress)
            while first.step < total:
                batches = []
                for k, trainer in enumerate(self.trainers):
                    with self.stack.seed_rng(k):
                        batches.append(trainer.next_batch())
                metrics = ([None] * len(batches) if batches[0] is None
                           else self.stack.update(batches))
                progress.update()
                statuses, stop_signal = [], self.stop_signal  # one answer for every seed
                for k, trainer in enumerate(self.trainers):
                    trainer.stop_signal = stop_signal
                    with self.stack.seed_rng(k):
                        trainer.end_step(metrics[k])
                        statuses.append(trainer.after_step(progress))
                if any(status is not None for status in statuses):
                    return next(status for status in statuses if status is not None)
            for k, trainer in enumerate(self.trainers):
                with self.stack.seed_rng(k):
                    trainer.save("final")
        except KeyboardInterrupt:
            name = self.stop_signal or "SIGINT"
            print(f"stopped by a second signal ({name}) at step {first.step} (continue with the "
                  "same command and --resume, from each seed's latest checkpoint)",
                  file=sys.stderr)
            return 128 + signal.Signals[name]
        finally:
            progress.close()
            for trainer in self.trainers:
                trainer.log.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return 0


def _check_before_writing(config: RunConfig) -> None:
    """What would stop a seed after an earlier one had written its run directory: a directory
    that already holds a run (without ``--resume``), a ``--from`` that is no checkpoint. Checked
    for every seed first, so that bad input writes nothing."""
    from smac_core.checkpoint import resolve_checkpoint

    for seed in config.seeds or ():
        seed_config = config.for_seed(seed)
        if not config.resume and (seed_config.out / CONFIG_FILE).exists():
            raise SmacError(f"{seed_config.out} (seed {seed}) already holds a run; pass --resume "
                            "to continue the seeds, or choose another --out")
        if seed_config.from_checkpoint is not None:
            resolve_checkpoint(seed_config.from_checkpoint)


def run_seeds(config: RunConfig, given: RunConfig) -> int:
    """Run a checked ``--seeds`` configuration (``given``: as given, whose per-seed commands
    the run directories record): claim and lock OUT/seed<k> for every seed, build each seed's
    trainer as its single-seed run would, stack them and run the lockstep loop. The exit
    status as ``train.run``'s."""
    from smac_core.trainers import build_offline, build_online

    seeds = list(config.seeds or ())
    _check_before_writing(config)
    with ExitStack() as locks:
        trainers, resume_from, rng_states = [], [], []
        for seed in seeds:
            seed_config = config.for_seed(seed)
            command = given.for_seed(seed).command()
            locks.enter_context(run_directory(seed_config.out, command))
            build = build_online if config.phase == "online" else build_offline
            trainer, checkpoint = build(seed_config, command)
            trainers.append(trainer)
            resume_from.append(checkpoint)
            rng_states.append(rng_state(seed_config.device))  # as its single run has it now
        stack = SeedStack([trainer.agent for trainer in trainers], rng_states)
        return SeedGroup(trainers, stack, seeds).run(resume_from)
