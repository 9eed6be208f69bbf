"""Checkpoints: network weights in safetensors, metadata in JSON, resume state loaded weights-only.

Layout of one checkpoint directory::

    model.safetensors   every network tensor, named "<network>.<parameter>" (e.g. "actor.mu.weight")
    metadata.json       algorithm, config, step, env, observation normalisation, action bounds,
                        dataset id, package versions, git commit, sha256 of the other files
    train_state.pt      optional, for --resume: optimizer states, replay buffer, RNG states
                        (plain tensors and containers, read with torch.load(weights_only=True))

Other artifacts in the same format carry a metadata ``kind`` (SMAC's score model, its interrupted
training): ``CheckpointArtifact`` stores one at a path, ``RunArtifacts`` those of a run directory
(``<run>/<name>/``), for the agents that keep state across runs (``smac_core.state.Artifact``).

``export_policy`` writes a policy-only copy (the ``actor.*`` tensors, no resume state, metadata
``exported_from``): what ``load_checkpoint`` and ``landscape`` need, a fifth of the size; it
cannot be fine-tuned from (no critic).

A checkpoint is written to a temporary sibling directory and renamed into place, with SIGINT and
SIGTERM held back until it is in place, so a reader never sees a half-written one. Loading never
unpickles code and checks the metadata before anything uses it (``check_metadata``): its own
sha256 (``metadata_sha256``; checkpoints written before it existed have none), the sha256 of the
other files, and for a policy checkpoint the keys ``build_policy`` and the trainer read, with
consistent lengths, finite values and observation stds > 0. A run directory holds
``checkpoints/step_<N>/`` and ``checkpoints/final/``; every loader accepts a run directory and
then uses its final checkpoint (or the latest step when there is no final yet).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import platform
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from smac_core.errors import SmacError
from smac_core.nets import MLP, DeterministicPolicy
from smac_core.state import flat_state_dict, sub_state_dict

FORMAT_VERSION = 1
METADATA_DIGEST = "metadata_sha256"  # covers the metadata itself; an added key, so readers of
# this format that predate it (processes still running older code) read new checkpoints too
# what a policy checkpoint (one without a "kind", which marks other artifacts) must record
POLICY_KEYS = ("algorithm", "step", "env", "obs_dim", "act_dim", "actor_hidden", "obs_mean",
               "obs_std", "action_low", "action_high")
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
TRAIN_STATE_FILE = "train_state.pt"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str]:
    import gymnasium
    import numpy

    from smac_core import __version__

    return {"smac_core": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "gymnasium": gymnasium.__version__, "python": platform.python_version()}


def stored_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors as safetensors stores them: detached, contiguous, on the CPU."""
    return {name: value.detach().cpu().contiguous() for name, value in tensors.items()}


def network_tensors(networks: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Flatten named modules into "<network>.<tensor>" -> contiguous CPU tensor."""
    return stored_tensors(flat_state_dict(networks))


def save_checkpoint(path: str | Path, networks: dict[str, nn.Module], metadata: dict[str, Any],
                    train_state: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint directory atomically (replacing one that exists) and return its path.

    ``metadata`` must hold at least ``algorithm``, ``step``, ``env``, ``obs_dim``, ``act_dim``,
    ``actor_hidden``, ``obs_mean``, ``obs_std``, ``action_low``, ``action_high``.
    """
    return save_tensors(path, network_tensors(networks), metadata, train_state)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any],
                 train_state: dict[str, Any] | None = None) -> Path:
    """``save_checkpoint`` of tensors already named "<network>.<tensor>" (any artifact: its
    metadata's ``kind`` says which, a policy checkpoint has none)."""
    return _write_checkpoint(Path(path), stored_tensors(tensors),
                             {**metadata, "versions": package_versions(),
                              "git_commit": git_commit()}, train_state)


def export_policy(source: str | Path, path: str | Path) -> Path:
    """Write the policy-only copy of a checkpoint (or a run directory's final one) to ``path``:
    its ``actor.*`` tensors and metadata (versions and commit of the training run kept), no
    ``train_state.pt``; ``exported_from`` records the source and its sha256."""
    ckpt = resolve_checkpoint(source)
    tensors, meta = load_tensors(ckpt)
    actor = {name: t for name, t in tensors.items() if name.startswith("actor.")}
    provenance = {"checkpoint": str(ckpt), "sha256": meta["sha256"], "kept": "actor.*"}
    meta = {k: v for k, v in meta.items()
            if k not in ("sha256", "format_version", METADATA_DIGEST)}
    return _write_checkpoint(Path(path), actor, {**meta, "exported_from": provenance}, None)


def metadata_digest(meta: dict[str, Any]) -> str:
    """sha256 of the metadata without its ``metadata_sha256`` (canonical JSON)."""
    body = {k: v for k, v in meta.items() if k != METADATA_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def _write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any],
                      train_state: dict[str, Any] | None) -> Path:
    """Write in a temporary sibling, then rename; SIGINT/SIGTERM wait until it is done."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        return _write_checkpoint_files(path, tensors, metadata, train_state)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _write_checkpoint_files(path: Path, tensors: dict[str, torch.Tensor],
                            metadata: dict[str, Any], train_state: dict[str, Any] | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        files = [WEIGHTS_FILE]
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE_FILE)
            files.append(TRAIN_STATE_FILE)
        meta = {"format_version": FORMAT_VERSION, **metadata,
                "sha256": {f: _sha256(tmp / f) for f in files}}
        meta[METADATA_DIGEST] = metadata_digest(meta)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        for f in (*files, METADATA_FILE):
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        if path.exists():
            trash = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, trash)
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def checkpoint_series(run_dir: str | Path) -> list[tuple[int, Path]]:
    """The ``checkpoints/step_<N>`` directories of a run, sorted by step."""
    root = Path(run_dir) / "checkpoints"
    series = []
    for p in root.glob("step_*") if root.is_dir() else []:
        suffix = p.name.removeprefix("step_")
        if suffix.isdigit() and (p / METADATA_FILE).is_file():
            series.append((int(suffix), p))
    return sorted(series)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory itself, or a run directory's ``final`` (else its latest step)."""
    path = Path(path)
    if (path / METADATA_FILE).is_file():
        return path
    if (path / "checkpoints" / "final" / METADATA_FILE).is_file():
        return path / "checkpoints" / "final"
    series = checkpoint_series(path)
    if series:
        return series[-1][1]
    if not path.exists():
        raise SmacError(f"no such checkpoint or run directory: {path}")
    raise SmacError(f"{path} is neither a checkpoint (no {METADATA_FILE}) nor a run directory "
                    "with checkpoints/final or checkpoints/step_<N>")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint or run directory, as stored (``check_metadata`` checks it)."""
    ckpt = resolve_checkpoint(path)
    try:
        meta = json.loads((ckpt / METADATA_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SmacError(f"{ckpt / METADATA_FILE} is not valid JSON ({exc}); "
                        "the checkpoint is corrupted") from exc
    except OSError as exc:
        raise SmacError(f"cannot read {ckpt / METADATA_FILE}: {exc.strerror or exc}") from exc
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise SmacError(f"{ckpt} has metadata of an unknown format "
                        f"(format_version {version}, expected {FORMAT_VERSION})")
    return meta


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_metadata(ckpt: Path, meta: dict[str, Any]) -> None:
    """``SmacError`` naming the file and the problem unless the metadata is intact (module
    docstring) and, for a policy checkpoint, complete and consistent."""
    where = ckpt / METADATA_FILE
    if METADATA_DIGEST in meta and meta[METADATA_DIGEST] != metadata_digest(meta):
        raise SmacError(f"{where} does not match the sha256 recorded in it "
                        f"({METADATA_DIGEST}): the metadata was edited or corrupted")
    hashes = meta.get("sha256")
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise SmacError(f"{where}: 'sha256' must map file names to their sha256")
    if "kind" in meta:  # another artifact (the score model): its loader checks the rest
        return
    missing = [key for key in POLICY_KEYS if key not in meta]
    if missing:
        raise SmacError(f"{where} lacks {missing}: not a complete policy checkpoint")
    problems = []
    for key in ("algorithm", "env"):
        if not isinstance(meta[key], str) or not meta[key]:
            problems.append(f"{key} must be a non-empty string, got {meta[key]!r}")
    if not _is_count(meta["step"], 0):
        problems.append(f"step must be an integer >= 0, got {meta['step']!r}")
    for key in ("obs_dim", "act_dim"):
        if not _is_count(meta[key], 1):
            problems.append(f"{key} must be an integer >= 1, got {meta[key]!r}")
    hidden = meta["actor_hidden"]
    if not (isinstance(hidden, list) and hidden and all(_is_count(h, 1) for h in hidden)):
        problems.append(f"actor_hidden must be a non-empty list of integers >= 1, got {hidden!r}")
    for key, size in (("obs_mean", "obs_dim"), ("obs_std", "obs_dim"), ("action_low", "act_dim"),
                      ("action_high", "act_dim")):
        value = meta[key]
        if not (isinstance(value, list) and all(_is_number(v) for v in value)):
            problems.append(f"{key} must be a list of finite numbers")
        elif _is_count(meta[size], 1) and len(value) != meta[size]:
            problems.append(f"{key} has {len(value)} entries, {size} is {meta[size]}")
    if not problems:
        if min(meta["obs_std"]) <= 0:
            problems.append(f"obs_std must be > 0 everywhere, got {min(meta['obs_std'])}")
        if any(lo >= hi for lo, hi in zip(meta["action_low"], meta["action_high"], strict=True)):
            problems.append("action_low must be below action_high everywhere")
    for key in ("reward_scale", "reward_bias"):
        if key in meta and not _is_number(meta[key]):
            problems.append(f"{key} must be a finite number, got {meta[key]!r}")
    if problems:
        raise SmacError(f"{where}: " + "; ".join(problems))


def verified_metadata(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The checkpoint directory of ``path`` and its metadata, checked (``check_metadata``)."""
    ckpt = resolve_checkpoint(path)
    meta = read_metadata(ckpt)
    check_metadata(ckpt, meta)
    return ckpt, meta


def _verified(ckpt: Path, meta: dict[str, Any], name: str) -> Path:
    file = ckpt / name
    if not file.is_file():
        raise SmacError(f"checkpoint {ckpt} lacks {name}")
    expected = meta["sha256"].get(name)
    if expected is None:
        raise SmacError(f"{ckpt / METADATA_FILE} records no sha256 for {name}: the checkpoint "
                        "was not written by smac_core.checkpoint or its metadata was altered")
    if _sha256(file) != expected:
        raise SmacError(f"{file} does not match the sha256 recorded in its metadata: "
                        "the checkpoint is corrupted or truncated")
    return file


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """All network tensors ("<network>.<tensor>") and the metadata of a checkpoint or run dir."""
    ckpt, meta = verified_metadata(path)
    try:
        tensors = load_file(str(_verified(ckpt, meta, WEIGHTS_FILE)))
    except SafetensorError as exc:
        raise SmacError(f"cannot read {ckpt / WEIGHTS_FILE}: {exc}") from exc
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise SmacError(f"checkpoint {ckpt}: tensor '{name}' contains NaN/Inf values")
    return tensors, meta


def load_train_state(path: str | Path) -> dict[str, Any]:
    """The resume state of a checkpoint (weights-only unpickling: tensors and containers only)."""
    ckpt, meta = verified_metadata(path)
    file = _verified(ckpt, meta, TRAIN_STATE_FILE)
    try:
        return torch.load(file, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        # not torch's message: it suggests unsafe loading, which must never be done here
        raise SmacError(f"cannot read {file} ({type(exc).__name__}): it is truncated, or holds "
                        "objects other than tensors and plain containers; resume from "
                        "another checkpoint of the run") from None


@dataclass(frozen=True)
class CheckpointArtifact:
    """An artifact (``smac_core.state.Artifact``) stored as a checkpoint directory at ``path``:
    tensors in ``model.safetensors``, metadata in ``metadata.json``, the resume state in
    ``train_state.pt``, written atomically and checked when read."""

    path: Path

    def __str__(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return (self.path / METADATA_FILE).is_file()

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return load_tensors(self.path)

    def load_state(self) -> dict[str, Any]:
        return load_train_state(self.path)

    def save(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any],
             state: dict[str, Any] | None = None) -> None:
        save_tensors(self.path, tensors, metadata, state)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass(frozen=True)
class RunArtifacts:
    """The artifacts of a run directory (``smac_core.state.ArtifactStore``): ``<root>/<name>/``,
    each a ``CheckpointArtifact`` (SMAC's ``score_model/`` and ``score_model_training/``)."""

    root: Path

    def artifact(self, name: str) -> CheckpointArtifact:
        return CheckpointArtifact(Path(self.root) / name)


@dataclass
class Checkpoint:
    """What ``landscape`` and users need from a checkpoint, without knowing its algorithm.

    ``policy`` maps raw observations to env actions (its parameters are the actor's
    ``trunk.*``/``mu.*``, or a flow agent's ``FlowPolicy``: the fine-tuned field's
    ``field.net.*``, acting from the evaluation noise of ``smac_core.rollout``); ``tensors``
    holds every network tensor; ``make_env()`` builds the env the policy was trained for.
    """

    path: Path
    policy: nn.Module  # DeterministicPolicy, or FlowPolicy (smac_core.algos.flow)
    metadata: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def make_env(self, **kwargs: Any):
        from smac_core.tasks import make_env

        return make_env(self.metadata["env"], **kwargs)

    @property
    def env_name(self) -> str:
        return self.metadata["env"]


def build_policy(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> nn.Module:
    """The evaluated policy module of a checkpoint: the ``DeterministicPolicy`` of its
    ``actor.trunk``/``actor.mu``, or for a flow agent's checkpoint (QAM, TRQAM) the
    ``FlowPolicy`` of its fine-tuned velocity field ``actor.net`` (``flow_steps`` Euler steps
    from the config, acting from ``smac_core.rollout``'s evaluation noise)."""
    from smac_core.algos.flow import FLOW_ALGORITHMS, FLOW_STEPS, FlowPolicy, VelocityField

    t = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    actor = sub_state_dict(tensors, "actor")
    flow = meta["algorithm"] in FLOW_ALGORITHMS
    try:
        if flow:
            config = meta.get("config") or {}
            field = VelocityField(meta["obs_dim"], meta["act_dim"], meta["actor_hidden"],
                                  int(config.get("horizon", 1)))
            field.load_state_dict(actor)
        else:
            trunk = MLP(meta["obs_dim"], meta["actor_hidden"])
            mu = nn.Linear(trunk.out_dim, meta["act_dim"])
            trunk.load_state_dict(sub_state_dict(actor, "trunk"))
            mu.load_state_dict(sub_state_dict(actor, "mu"))
    except RuntimeError as exc:
        raise SmacError(f"the actor tensors do not match the architecture in the metadata: {exc}") \
            from exc
    if flow:
        return FlowPolicy(field, int(config.get("flow_steps", FLOW_STEPS)), meta["obs_mean"],
                          meta["obs_std"], meta["action_low"], meta["action_high"])
    return DeterministicPolicy(trunk, mu, t(meta["obs_mean"]), t(meta["obs_std"]),
                               t(meta["action_low"]), t(meta["action_high"]))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint directory, or a run directory's final checkpoint, for evaluation."""
    ckpt = resolve_checkpoint(path)
    tensors, meta = load_tensors(ckpt)
    return Checkpoint(ckpt, build_policy(tensors, meta), meta, tensors)

