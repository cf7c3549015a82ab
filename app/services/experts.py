"""Domain experts of a project (Mixture of Data Experts, Belenki, Agarwal, Shi, Toutanova 2025,
"Optimizing Pre-Training Data Mixtures with Mixtures of Data Experts").

An expert is a model trained on one domain alone. What the service keeps of it is, for every
validation domain ``j``, the expert's probability ``p_i(t)`` of every observed next token ``t``
of the trainer's fixed evaluation windows of ``j`` (:func:`mixopt.training.experts.
next_token_probs`): a 1-D float16 array whose length is :func:`mixopt.training.experts.
predicted_token_count` of the domain's validation split. From those arrays the MDE loss of any
mixture ``w`` is ``-mean_t log sum_i w_i p_i(t)`` (the paper's ensemble approximation,
:mod:`mixopt.mixing.mde`), without training it.

Storage: the arrays are ``.npy`` files under ``<home>/experts`` (the service's own data
directory, next to its shards and checkpoints). A file's path is built from database ids only
(``p<project>/e<expert>/d<domain>.npy``); no name from a request becomes a path component, and a
stored path is resolved and must stay inside that directory before it is read. Files are
written atomically (a temporary file in the same directory, fsync, rename): a reader sees the old
file or the new one, never part of one, and a refused upload writes nothing.

Uploads (``PUT .../experts/{domain}/probs/{val_domain}``) are checked before anything is
written: size (``MIXOPT_MAX_EXPERT_PROBS_BYTES``, 413), a ``.npy`` header (no pickles), dtype
float16 or float32, 1-D, length equal to the predicted token count, finite, in (0, 1]; every
refusal is a 422 naming the field (``body``, ``dtype``, ``shape``, ``values``, ``val_domain``,
``block_size``).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from app.core.config import Settings, get_settings
from app.schemas.experts import ExpertsCreate
from app.services import jobs as job_service
from app.services.errors import Conflict, Invalid, NotFound, TooLarge
from app.services.swarms import check_trainable
from app.store.models import Domain, Expert, Fit, Job, Project, Run, RunTag

#: expert states that a worker holds (the row cannot be replaced, uploaded to or deleted)
ACTIVE = ("queued", "running")
#: evaluation windows of an upload when none are given: the trainer's defaults (block_size 128,
#: eval_batches 4 x batch_size 16)
DEFAULT_BLOCK_SIZE, DEFAULT_WINDOWS = 128, 64
#: the smallest positive float16 (2**-24, a subnormal): stored probabilities are clipped up to it
#: (as mixopt.training.experts does), so a valid float32 probability never rounds to 0
FLOAT16_TINY = float(np.finfo(np.float16).smallest_subnormal)
#: trainer settings a swarm's training job carries that the experts take
SWARM_SETTINGS = (
    "preset",
    "train_steps",
    "train_tokens",
    "seed",
    "batch_size",
    "block_size",
    "eval_interval",
    "learning_rate",
)
#: the trainer's evaluation batches per domain (``TrainConfig.eval_batches``)
EVAL_BATCHES = 4
#: most bytes of expert probabilities loaded for one fit, prediction or recommendation (float16:
#: 7 experts x 7 domains x 100k tokens is 10 MB)
MAX_LOAD_BYTES = 2**31


def predicted_token_count(n_val_tokens: int, block_size: int, n_windows: int) -> int:
    """The length of an expert's probability array for a validation split of ``n_val_tokens``
    tokens: ``min(n_windows, (n_val_tokens - 1) // block_size) * block_size``, the formula of
    :func:`mixopt.training.experts.predicted_token_count` (kept here so the API never imports
    torch, as :data:`app.services.swarms.TRAINING_PRESETS`; a test checks the two agree). A split
    shorter than ``block_size + 1`` tokens is a 422 naming ``block_size``."""
    fit = (int(n_val_tokens) - 1) // int(block_size)
    if fit < 1:
        raise Invalid(
            f"the validation split has {n_val_tokens} tokens, fewer than block_size + 1 "
            f"({int(block_size) + 1})",
            field="block_size",
        )
    return min(int(n_windows), fit) * int(block_size)


# -- files ----------------------------------------------------------------------------------------
def experts_dir(settings: Settings | None = None) -> Path:
    """Where expert probability files live: ``<home>/experts``."""
    return Path((settings or get_settings()).home) / "experts"


def _relative(expert: Expert, domain: Domain) -> str:
    # ids only: a domain's name never becomes a path component
    return f"p{int(expert.project_id)}/e{int(expert.id)}/d{int(domain.id)}.npy"


def _resolve(rel: str, settings: Settings | None = None) -> Path:
    """The stored relative path, resolved inside the experts directory (else an error)."""
    root = experts_dir(settings).resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or path == root:
        raise RuntimeError(f"expert file {rel!r} resolves outside the experts directory")
    return path


def _npy_bytes(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(values, dtype=np.float16), allow_pickle=False)
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _files_of(expert: Expert) -> list[str]:
    return [m["file"] for m in (expert.probs or {}).values() if isinstance(m.get("file"), str)]


def _remove_files(files: list[str]) -> None:
    for rel in files:
        try:
            _resolve(rel).unlink(missing_ok=True)
        except (OSError, RuntimeError):
            pass


def remove_project_files(project_id: int) -> None:
    """Remove a deleted project's directory of expert files (``p<id>``, inside the root)."""
    path = _resolve(f"p{int(project_id)}")
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def as_float16(values: np.ndarray) -> np.ndarray:
    """Probabilities in (0, 1] as float16, clipped up to the smallest positive float16."""
    return np.clip(np.asarray(values, dtype=np.float32), FLOAT16_TINY, 1.0).astype(np.float16)


def store_probs(expert: Expert, domain: Domain, values: np.ndarray, n_val_tokens: int) -> None:
    """Write the checked probabilities of ``expert`` on validation domain ``domain`` (atomically)
    and record the file's metadata and the expert's loss on the row (not committed)."""
    stored = as_float16(values)
    data = _npy_bytes(stored)
    rel = _relative(expert, domain)
    _write_atomic(_resolve(rel), data)
    shard = (domain.stats or {}).get("shards")
    probs = dict(expert.probs or {})
    probs[domain.name] = {
        "file": rel,
        "shape": list(stored.shape),
        "dtype": "float16",
        "sha256": hashlib.sha256(data).hexdigest(),
        "shard": shard,
        "val_tokens": int(n_val_tokens),
    }
    losses = dict(expert.losses or {})
    losses[domain.name] = float(-np.mean(np.log(stored.astype(np.float64))))
    expert.probs, expert.losses = probs, losses


def read_probs(expert: Expert, val_domain: str) -> np.ndarray:
    """The stored float16 array of ``expert`` on ``val_domain`` (its hash checked)."""
    meta = expert.probs[val_domain]
    data = _resolve(meta["file"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise RuntimeError(
            f"the probability file of expert {expert.domain!r} on {val_domain!r} changed on disk "
            "(sha256 differs from the stored one); train or upload it again"
        )
    return np.load(io.BytesIO(data), allow_pickle=False)


# -- rows -----------------------------------------------------------------------------------------
def _domain(project: Project, name: str, what: str = "domain") -> Domain:
    for d in project.domains:
        if d.name == name:
            return d
    raise NotFound(f"{what} {name!r} is not a domain of project {project.id}")


def status_of(e: Expert) -> str:
    """The expert's status, or its job's when the job ended without it (a pending job
    cancelled before a worker took it leaves its experts ``queued``)."""
    if e.status in ACTIVE and e.job_id:
        session = object_session(e)
        job = session.get(Job, e.job_id) if session is not None else None
        if job is not None and job.state in ("failed", "cancelled"):
            return job.state
    return e.status


def expert_public(project: Project, e: Expert) -> dict[str, Any]:
    names = [d.name for d in project.domains]
    return {
        "id": e.id,
        "project_id": e.project_id,
        "domain": e.domain,
        "status": status_of(e),
        "origin": e.origin,
        "preset": e.preset,
        "train_steps": e.train_steps,
        "train_tokens": e.train_tokens,
        "seed": e.seed,
        "block_size": e.block_size,
        "n_windows": e.n_windows,
        "probs": {
            k: {f: v[f] for f in ("shape", "dtype", "sha256", "shard", "val_tokens")}
            for k, v in (e.probs or {}).items()
        },
        "losses": dict(e.losses or {}),
        "missing": [n for n in names if n not in (e.probs or {})],
        "details": dict(e.details or {}),
        "error": e.error,
        "job_id": e.job_id,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
    }


def list_experts(session: Session, project: Project) -> list[Expert]:
    """The project's experts, in the project's domain order."""
    rows = session.scalars(select(Expert).where(Expert.project_id == project.id)).all()
    order = {d.name: i for i, d in enumerate(project.domains)}
    return sorted(rows, key=lambda e: (order.get(e.domain, len(order)), e.domain))


def find_expert(session: Session, project: Project, domain: str) -> Expert | None:
    return session.scalar(
        select(Expert).where(Expert.project_id == project.id, Expert.domain == domain)
    )


def get_expert(session: Session, project: Project, domain: str) -> Expert:
    e = find_expert(session, project, domain)
    if e is None:
        raise NotFound(f"project {project.id} has no expert for domain {domain!r}")
    return e


def delete_expert(session: Session, project: Project, domain: str) -> None:
    e = get_expert(session, project, domain)
    if status_of(e) in ACTIVE:
        raise Conflict(
            f"the expert for {domain!r} is {e.status} in job {e.job_id}; cancel the job first"
        )
    files = _files_of(e)
    session.delete(e)
    session.commit()
    _remove_files(files)


def _complete(project: Project, e: Expert) -> bool:
    return all(d.name in (e.probs or {}) for d in project.domains)


# -- uploads --------------------------------------------------------------------------------------
def _header(body: bytes) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of a ``.npy`` body, read from its header alone (422 naming
    ``body`` when it is not one)."""
    f = io.BytesIO(body)
    try:
        major, _minor = np.lib.format.read_magic(f)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise Invalid(
            f"not a .npy file (numpy.save format, no pickles): {exc}", field="body"
        ) from None
    return tuple(shape), np.dtype(dtype), f.tell()


def parse_probs(body: bytes, expected: int) -> np.ndarray:
    """The probabilities of an uploaded ``.npy`` body, checked (see the module docstring)."""
    limit = get_settings().max_expert_probs_bytes
    if len(body) > limit:
        raise TooLarge(
            f"the probability file is {len(body)} bytes; at most {limit} "
            "(MIXOPT_MAX_EXPERT_PROBS_BYTES)",
            field="body",
        )
    shape, dtype, offset = _header(body)
    if dtype.kind != "f" or dtype.itemsize not in (2, 4):
        raise Invalid(f"must be float16 or float32, got {dtype.str} ({dtype.name})", field="dtype")
    if len(shape) != 1:
        raise Invalid(f"must be 1-D (one value per token), got shape {list(shape)}", field="shape")
    if shape[0] != expected:
        raise Invalid(
            f"must hold {expected} values (one per predicted token of the validation windows), "
            f"got {shape[0]}",
            field="shape",
        )
    if len(body) - offset != expected * dtype.itemsize:
        raise Invalid(
            f"the data holds {len(body) - offset} bytes; the header's shape {list(shape)} of "
            f"{dtype.name} needs {expected * dtype.itemsize}",
            field="body",
        )
    values = np.frombuffer(body, dtype=dtype, count=expected, offset=offset).astype(np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        raise Invalid(
            f"{int(bad.sum())} values are NaN or infinite (first at index {int(bad.argmax())})",
            field="values",
        )
    for mask, what in ((values <= 0, "<= 0"), (values > 1, "> 1")):
        if mask.any():
            raise Invalid(
                f"probabilities must lie in (0, 1]: {int(mask.sum())} values are {what} "
                f"(first at index {int(mask.argmax())}: {float(values[mask.argmax()])})",
                field="values",
            )
    return values


def _val_tokens(domain: Domain) -> int:
    n = (domain.stats or {}).get("val_tokens")
    if not n:
        raise Invalid(
            f"domain {domain.name!r} has no measured validation split; ingest the project's "
            "domains first (POST .../domains/ingest)",
            field="val_domain",
        )
    return int(n)


def _check_windows(session: Session, project: Project, block_size: int, n_windows: int) -> None:
    """Every expert of a project is over the same evaluation windows."""
    other = session.scalar(select(Expert).where(Expert.project_id == project.id).limit(1))
    if other is not None and (other.block_size, other.n_windows) != (block_size, n_windows):
        raise Invalid(
            f"the project's experts are over windows of block_size {other.block_size} x "
            f"n_windows {other.n_windows}; got {block_size} x {n_windows}",
            field="block_size",
        )


def upload_probs(
    session: Session,
    project: Project,
    domain: str,
    val_domain: str,
    body: bytes,
    *,
    block_size: int | None = None,
    n_windows: int | None = None,
) -> Expert:
    """Store an external expert's probabilities for one validation domain (an ``uploaded``
    expert is created on its first file; ``succeeded`` once every domain has one)."""
    expert_domain = _domain(project, domain)
    val = _domain(project, val_domain, "val_domain")
    e = find_expert(session, project, expert_domain.name)
    if e is not None and (e.origin != "uploaded" or status_of(e) in ACTIVE):
        raise Conflict(
            f"the expert for {domain!r} was trained by the service ({e.status}); DELETE it "
            "before uploading probabilities for it"
        )
    if e is not None:
        block = block_size if block_size is not None else e.block_size
        windows = n_windows if n_windows is not None else e.n_windows
    else:
        block = block_size if block_size is not None else DEFAULT_BLOCK_SIZE
        windows = n_windows if n_windows is not None else DEFAULT_WINDOWS
    _check_windows(session, project, block, windows)
    n_val = _val_tokens(val)
    values = parse_probs(body, predicted_token_count(n_val, block, windows))
    if e is None:
        e = Expert(
            project_id=project.id,
            domain=expert_domain.name,
            status="partial",
            origin="uploaded",
            block_size=block,
            n_windows=windows,
            probs={},
            losses={},
            details={},
        )
        session.add(e)
        _flush(session, expert_domain.name)
    store_probs(e, val, values, n_val)
    e.status = "succeeded" if _complete(project, e) else "partial"
    session.commit()
    return e


# -- training -------------------------------------------------------------------------------------
def _swarm_settings(session: Session, project: Project, tag: str) -> dict[str, Any]:
    """The trainer settings of a trained swarm (its first run's training job)."""
    job_id = session.scalar(
        select(Run.job_id)
        .join(RunTag, RunTag.run_id == Run.id)
        .where(Run.project_id == project.id, RunTag.tag == tag, Run.origin == "trained")
        .order_by(Run.id)
        .limit(1)
    )
    job = session.get(Job, job_id) if job_id else None
    if job is None or job.kind != "train":
        raise Invalid(f"project {project.id} has no trained swarm tagged {tag!r}", field="swarm")
    return {k: job.params.get(k) for k in SWARM_SETTINGS}


def training_settings(session: Session, project: Project, data: ExpertsCreate) -> dict[str, Any]:
    """The experts' trainer settings: the swarm's (when named), overridden by the request's."""
    base: dict[str, Any] = {
        "preset": "tiny",
        "seed": 0,
        "batch_size": 16,
        "block_size": 128,
        "eval_interval": 50,
        "learning_rate": None,
        "train_steps": None,
        "train_tokens": None,
    }
    if data.swarm is not None:
        base.update({k: v for k, v in _swarm_settings(session, project, data.swarm).items()})
        if data.train_steps is not None or data.train_tokens is not None:
            base["train_steps"] = base["train_tokens"] = None
    given = data.model_dump(include=set(SWARM_SETTINGS), exclude_none=True)
    out = {**base, **given}
    if (out["train_steps"] is None) == (out["train_tokens"] is None):
        raise Invalid("give exactly one of train_steps or train_tokens", field="train_steps")
    if out["train_tokens"] is not None:
        per_step = out["batch_size"] * out["block_size"]
        if -(-out["train_tokens"] // per_step) > get_settings().max_train_steps:
            raise Invalid(
                f"train_tokens {out['train_tokens']} at {per_step} tokens per step is more than "
                f"{get_settings().max_train_steps} steps (MIXOPT_MAX_TRAIN_STEPS)",
                field="train_tokens",
            )
    return out


def _flush(session: Session, domain: str) -> None:
    """Flush new expert rows; a concurrent request that created the same (project, domain)
    first is a 409, not a 500."""
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            f"another request created an expert for {domain!r} at the same time; retry"
        ) from None


def _claim_rows(
    session: Session, project: Project, names: list[str], replace: bool
) -> tuple[list[Expert], list[str]]:
    """The expert rows to train (new ones) and the files of the rows they replace: existing
    experts with ``replace``, and failed or cancelled trainings (trained again without it)."""
    replaced: list[str] = []
    for name in names:
        e = find_expert(session, project, name)
        status = status_of(e) if e is not None else None
        if e is not None and status in ACTIVE:
            raise Conflict(f"the expert for {name!r} is already {e.status} in job {e.job_id}")
        if e is not None and not replace and status not in ("failed", "cancelled"):
            raise Conflict(
                f"domain {name!r} already has an expert ({e.origin}, {status}); pass "
                "replace=true to train it again, or DELETE it"
            )
        if e is not None:
            replaced += _files_of(e)
            session.delete(e)
    session.flush()
    rows = [Expert(project_id=project.id, domain=n, probs={}, losses={}, details={}) for n in names]
    return rows, replaced


def create_training(
    session: Session, project: Project, data: ExpertsCreate
) -> tuple[list[Expert], Job]:
    """Plan one expert per requested domain (status ``queued``) and one ``train_experts`` job
    that trains them one after the other; the caller enqueues."""
    settings = training_settings(session, project, data)
    check_trainable(project, settings["preset"])
    names = [d.name for d in project.domains]
    wanted = list(dict.fromkeys(data.domains or names))
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise Invalid(f"not domains of project {project.id}: {unknown}", field="domains")
    windows = EVAL_BATCHES * int(settings["batch_size"])
    _check_windows_except(session, project, wanted, int(settings["block_size"]), windows)
    rows, replaced = _claim_rows(session, project, wanted, data.replace)
    for e in rows:
        e.status, e.origin, e.preset = "queued", "trained", settings["preset"]
        e.train_steps, e.train_tokens, e.seed = (
            settings["train_steps"],
            settings["train_tokens"],
            settings["seed"],
        )
        e.block_size, e.n_windows = int(settings["block_size"]), windows
        session.add(e)
    _flush(session, ", ".join(wanted))
    params = {**settings, "expert_ids": [e.id for e in rows]}
    job = job_service.create_job(
        session, kind="train_experts", project_id=project.id, params=params, queue=data.queue
    )
    for e in rows:
        e.job_id = job.id
    session.commit()
    _remove_files(replaced)  # once the new rows are committed (new ids, so new files)
    return rows, job


def _check_windows_except(
    session: Session, project: Project, replaced: list[str], block_size: int, n_windows: int
) -> None:
    """As :func:`_check_windows`, against the experts this request does not replace."""
    others = session.scalars(
        select(Expert).where(Expert.project_id == project.id, Expert.domain.not_in(replaced))
    ).all()
    for o in others:
        if (o.block_size, o.n_windows) != (block_size, n_windows):
            raise Invalid(
                f"the project's other experts are over windows of block_size {o.block_size} x "
                f"n_windows {o.n_windows} (n_windows = 4 x batch_size); these would be "
                f"{block_size} x {n_windows}",
                field="block_size",
            )


# -- for the estimators ---------------------------------------------------------------------------
def load_expert_probs(session: Session, project: Project) -> Any:
    """The project's complete experts as a :class:`mixopt.mixing.mde.ExpertProbs` (experts in
    the project's domain order, one array per validation domain), or None when it has none.

    An expert whose probabilities were computed on a validation shard the domain no longer has
    (its data changed since) is refused with a 422 naming it: its MDE losses would be over other
    tokens than the runs' validation losses.
    """
    names = {d.name for d in project.domains}
    experts = [
        e
        for e in list_experts(session, project)
        if e.domain in names and e.status == "succeeded" and _complete(project, e)
    ]
    if not experts:
        return None
    for e in experts:
        for d in project.domains:
            now = (d.stats or {}).get("shards")
            was = e.probs[d.name].get("shard")
            if now and was and now != was:
                raise Invalid(
                    f"the expert for {e.domain!r} has probabilities over validation shard "
                    f"{was} of {d.name!r}, whose data is now shard {now}; train or upload it "
                    "again",
                    field="experts",
                )
    total = sum(int(e.probs[d.name]["shape"][0]) * 2 for e in experts for d in project.domains)
    if total > MAX_LOAD_BYTES:
        raise Invalid(
            f"the project's expert probabilities hold {total} bytes; at most {MAX_LOAD_BYTES} "
            "are loaded for a fit (fewer experts, or shorter validation windows)",
            field="experts",
        )
    from mixopt.mixing.mde import ExpertProbs  # lazy: mixopt.mixing loads every estimator

    arrays = {d.name: np.stack([read_probs(e, d.name) for e in experts]) for d in project.domains}
    try:
        return ExpertProbs([e.domain for e in experts], arrays)
    except ValueError as exc:  # its own bounds (experts, validation domains, tokens)
        raise Invalid(str(exc), field="experts") from None


def experts_for_fit(session: Session, fit_id: int, estimator: str) -> Any:
    """The experts a fit's estimator is handed (its fit context ``experts``): the project's
    :func:`load_expert_probs` for the ``mde*`` estimators (a project without complete experts
    is refused, naming the estimator) and for ``auto`` (which then also weighs the MDE
    estimators; None without experts, and auto stays as it was); None for the others."""
    from mixopt.mixing.mde import needs_experts  # lazy: mixopt.mixing loads every estimator

    if not needs_experts(estimator) and estimator != "auto":
        return None
    fit = session.get(Fit, fit_id)
    project = session.get(Project, fit.project_id) if fit is not None else None
    if project is None:
        raise NotFound(f"fit {fit_id} not found")
    try:
        probs = load_expert_probs(session, project)
    except Invalid:
        if needs_experts(estimator):
            raise
        return None  # auto without unusable (stale, too large) experts: as it was without any
    if probs is None and needs_experts(estimator):
        raise Invalid(missing_experts_message(estimator), field="estimator")
    return probs


def check_experts(session: Session, project: Project, estimator: str) -> None:
    """A fit of an ``mde*`` estimator needs one complete expert per domain: else a 422 naming
    ``estimator`` at the request (the fit job would fail)."""
    from mixopt.mixing.mde import needs_experts  # lazy: mixopt.mixing loads every estimator

    if not needs_experts(estimator):
        return
    ready = {
        e.domain
        for e in list_experts(session, project)
        if e.status == "succeeded" and _complete(project, e)
    }
    missing = [d.name for d in project.domains if d.name not in ready]
    if missing:
        raise Invalid(
            missing_experts_message(estimator) + f"; no complete expert for {missing}",
            field="estimator",
        )


def missing_experts_message(estimator: str) -> str:
    return (
        f"estimator {estimator!r} needs the project's experts (one per domain, with "
        "probabilities on every validation domain): train them (POST .../experts) or upload "
        "them (PUT .../experts/{domain}/probs/{val_domain}) first"
    )


# -- the dashboard ------------------------------------------------------------------------------
#: most runs listed in the dashboard's MDE predicted-vs-actual table
DASHBOARD_POINTS = 200


def _mde_fit(session: Session, project: Project) -> Fit | None:
    """The project's latest succeeded fit of an ``mde*`` estimator (or auto that chose one)."""
    fits = session.scalars(
        select(Fit)
        .where(Fit.project_id == project.id, Fit.status == "succeeded")
        .order_by(Fit.id.desc())
        .limit(200)
    )
    for f in fits:
        state = f.state if isinstance(f.state, dict) else {}
        fitted = state.get("fitted")
        chosen = str(fitted.get("chosen") or "") if isinstance(fitted, dict) else ""
        if f.estimator.startswith("mde") or chosen.startswith("mde"):
            return f
    return None


def _points(fit: Fit) -> list[dict[str, Any]]:
    """The fit's held-out (cross-validated) prediction of each run's objective, with the run."""
    fid = fit.fidelity if isinstance(fit.fidelity, dict) else {}
    run_ids = list(fit.run_ids or [])
    out = []
    for p in fid.get("predictions") or []:
        if not isinstance(p, dict):
            continue
        actual, predicted, i = p.get("actual"), p.get("predicted"), p.get("run_index")
        if not isinstance(actual, (int, float)) or not isinstance(predicted, (int, float)):
            continue
        run_id = run_ids[i] if isinstance(i, int) and 0 <= i < len(run_ids) else None
        out.append({"run_id": run_id, "actual": float(actual), "predicted": float(predicted)})
    return out


def dashboard_view(session: Session, project: Project) -> dict[str, Any]:
    """The project page's experts table (domain, origin, status, loss on each validation domain)
    and, when an MDE fit exists, its held-out prediction against the actual objective of every
    run (at most :data:`DASHBOARD_POINTS` rows)."""
    domains = [d.name for d in project.domains]
    rows = [
        {
            "domain": e.domain,
            "origin": e.origin,
            "status": e.status,
            "losses": [(e.losses or {}).get(d) for d in domains],
        }
        for e in list_experts(session, project)
    ]
    fit = _mde_fit(session, project)
    mde = None
    if fit is not None:
        points = _points(fit)
        fid = fit.fidelity if isinstance(fit.fidelity, dict) else {}
        pooled = fid.get("pooled")
        mde = {
            "id": fit.id,
            "estimator": fit.estimator,
            "n": len(points),
            "spearman": pooled.get("spearman") if isinstance(pooled, dict) else None,
            "points": points[:DASHBOARD_POINTS],
        }
    return {"domains": domains, "rows": rows, "mde": mde}


def _expert_hash(state: Any, depth: int = 0) -> str | None:
    """The expert set's hash an estimator's state records (an MDE estimator, or one that an
    ``auto`` fit kept), or None."""
    if depth > 8:
        return None
    if isinstance(state, dict):
        if isinstance(state.get("expert_hash"), str):
            return state["expert_hash"]
        values: Any = state.values()
    elif isinstance(state, list):
        values = state
    else:
        return None
    for v in values:
        found = _expert_hash(v, depth + 1)
        if found:
            return found
    return None


def experts_for_state(session: Session, fit_id: int, state: Any) -> Any:
    """The experts a stored fit's state must be handed again to predict or recommend (its
    ``expert_hash``): the project's current experts when they are the set it was fitted with;
    None when the fit needs none. A missing or changed set is a 409 naming the fit."""
    fitted = _expert_hash(state)
    if fitted is None:
        return None
    fit = session.get(Fit, fit_id)
    project = session.get(Project, fit.project_id) if fit is not None else None
    if project is None:
        raise NotFound(f"fit {fit_id} not found")
    probs = load_expert_probs(session, project)
    if probs is None or probs.content_hash != fitted:
        what = "no longer has them" if probs is None else "has another set now"
        raise Conflict(
            f"fit {fit_id} was made with the project's experts (set {fitted[:12]}) and the "
            f"project {what}; fit again with the current experts",
            field="fit_id",
        )
    return probs
