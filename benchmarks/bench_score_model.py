"""SMAC's dataset score model on a real dataset: where the held-out criterion stops it, how long
that takes, and its held-out denoising loss.

    python benchmarks/bench_score_model.py DATASET [--threads 1] [--set KEY=VALUE ...]

DATASET: a task name, a Minari id in the local store or a data file (as ``train offline
--dataset``). The model sees what SMAC's ``prepare_offline`` gives it: observations normalised
by the dataset's mean/std, actions in [-1, 1] (clipped: the tasks' action bounds are +-1), the
trajectory-return condition; ``DiffusionConfig`` defaults plus the ``--set`` overrides (JSON
values). Prints one held-out line per evaluation, then a markdown row: rows, held-out rows,
steps trained, why it stopped, wall seconds, steps/s, final held-out loss.

    python benchmarks/bench_score_model.py DATASET --compare-precisions [--rounds 3]

times the training step only, float32 against bfloat16 (``DiffusionConfig.precision``), on the
dataset's sizes with the ``--set`` config: rounds of 200 steps each (A, B, A, B, ...; no
held-out evaluations), thread CPU time on one thread, so that other jobs slow both alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from smac_core.algos.smac import trajectory_return_condition
from smac_core.data import load_dataset
from smac_core.data.normalization import ObsNormalizer
from smac_core.diffusion import DiffusionConfig, train_score_model
from smac_core.errors import SmacError, cli_entry

ROUND_STEPS = 200


def compare_precisions(inputs: tuple[torch.Tensor, ...], config: DiffusionConfig,
                       rounds: int) -> int:
    """Print ms per training step in float32 and bfloat16 (``--compare-precisions``)."""
    torch.set_num_threads(1)
    seconds = {"float32": 0.0, "bfloat16": 0.0}
    for _ in range(rounds):
        for precision in seconds:
            timed = replace(config, steps=ROUND_STEPS, holdout_fraction=0.0, patience=0,
                            precision=precision)
            start = time.thread_time()
            train_score_model(*inputs, timed, "cpu", torch.Generator().manual_seed(0),
                              progress=False)
            seconds[precision] += time.thread_time() - start
    ms = {p: 1000 * s / (rounds * ROUND_STEPS) for p, s in seconds.items()}
    print(f"\n| precision | ms per training step (one thread, {rounds} x {ROUND_STEPS} steps) |")
    print("| --- | ---: |")
    for precision, value in ms.items():
        print(f"| {precision} | {value:.2f} |")
    print(f"\nbfloat16 / float32 speed: {ms['float32'] / ms['bfloat16']:.2f}x")
    return 0


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="task name, Minari id or data file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="the training's generator seed")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="DiffusionConfig override (JSON value), repeatable")
    parser.add_argument("--compare-precisions", action="store_true",
                        help="time the training step in float32 and bfloat16 (one thread, "
                             "interleaved rounds of 200 steps) instead of training to the end")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per precision with --compare-precisions (default 3)")
    args = parser.parse_args(argv)
    overrides = {}
    for pair in args.set:
        key, sep, text = pair.partition("=")
        if not sep:
            raise SmacError(f"--set expects KEY=VALUE; got '{pair}'")
        overrides[key] = json.loads(text)
    config = DiffusionConfig.from_dict(overrides)
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset)
    condition, _ = trajectory_return_condition(dataset)
    inputs = (torch.as_tensor(ObsNormalizer.from_dataset(dataset)(dataset.observations)),
              torch.as_tensor(np.clip(dataset.actions, -1.0, 1.0)), torch.as_tensor(condition))
    if args.compare_precisions:
        return compare_precisions(inputs, config, args.rounds)
    start = time.perf_counter()
    score = train_score_model(*inputs, config, "cpu", torch.Generator().manual_seed(args.seed))
    seconds = time.perf_counter() - start
    info = score.train_info
    print("\n| dataset | rows | held-out rows | steps trained | stopped by | seconds | steps/s "
          "| held-out loss |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    print(f"| {args.dataset} | {info['num_samples']} | {info['heldout_rows']} "
          f"| {info['steps_trained']} | {info['stopped_by']} | {seconds:.0f} "
          f"| {info['steps_trained'] / seconds:.1f} | {info['heldout_loss']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
