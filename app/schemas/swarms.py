from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from app.core.config import get_settings
from app.schemas.common import INT32, Name, NonNegFloat, Schema
from app.schemas.jobs import JobPublic
from app.schemas.limits import max_json, max_value, queue_name


class OnlineSpec(Schema):
    """Train with an online mixer instead of a fixed mixture (the run's mixture is the start)."""

    algorithm: Literal["aioli", "doremi", "odm"]
    params: Annotated[dict, max_json] = Field(default_factory=dict)


class SwarmCreate(Schema):
    """Design a swarm of proxy runs and train each one in a worker."""

    #: at most MIXOPT_MAX_SWARM_COUNT (and 4096); required except for strategy rounds (there
    #: ``total_budget`` is the number of runs, and count, when given, must equal it)
    count: Annotated[int | None, max_value("max_swarm_count")] = Field(default=None, ge=1, le=4096)
    preset: str = "tiny"
    #: at most MIXOPT_MAX_TRAIN_STEPS
    train_steps: Annotated[int | None, max_value("max_train_steps")] = Field(
        default=None, gt=0, le=INT32
    )
    train_tokens: int | None = Field(default=None, gt=0)
    #: run seeds are 32-bit; per_run adds the run's index; non-negative (the design's and the
    #: trainer's random generators refuse a negative seed)
    seed: int = Field(default=0, ge=0, le=INT32 - 4096)
    #: shared: every run trains with ``seed`` (same initialisation and sampler stream, so runs
    #: differ only by their mixture: common random numbers); per_run: run i uses ``seed + i``
    seeds: Literal["shared", "per_run"] = "shared"
    #: seed of the mixture design (null: ``seed``): more runs for a swarm trained with one
    #: shared seed need new mixtures but the same training seed; non-negative, as ``seed``
    design_seed: int | None = Field(default=None, ge=0, le=INT32)
    #: swarm: RegMix Dirichlet around the token prior; space_filling: max-min distance picks;
    #: fixed: train exactly the given mixtures
    #: hierarchical: group shares first, then within each group (domains with group paths)
    #: rounds: ``total_budget`` runs in rounds of ``round_size`` (round 1 space-filling, twice
    #: the round size and at least one more than the domains; each later round fitted, acquired
    #: and trained; README "Swarms in rounds")
    strategy: Literal["swarm", "space_filling", "hierarchical", "fixed", "rounds"] = "swarm"
    #: strategy rounds: every run the swarm may train, all rounds together (at most
    #: MIXOPT_MAX_SWARM_COUNT and 4096)
    total_budget: Annotated[int | None, max_value("max_swarm_count")] = Field(
        default=None, ge=1, le=4096
    )
    #: strategy rounds: runs per round after the first (at most total_budget)
    round_size: int | None = Field(default=None, ge=1, le=4096)
    #: strategy rounds: how a round picks its runs: expected improvement (ei) or the lower
    #: confidence bound mu - 2 sd (lcb) (mixopt.mixing.rounds)
    acquisition: Literal["ei", "lcb"] = "ei"
    mixtures: list[dict[str, NonNegFloat]] | None = None
    temperature: float = Field(default=0.5, gt=0, le=10)
    min_weight: float = Field(default=1e-3, ge=0, lt=1)
    batch_size: int = Field(default=16, ge=1, le=4096)
    block_size: int = Field(default=128, ge=8, le=8192)
    eval_interval: int = Field(default=50, ge=1)
    learning_rate: float | None = Field(default=None, gt=0, le=1)
    online: OnlineSpec | None = None
    tag: Name | None = None
    #: Celery queue of the training jobs (route a swarm to a pool of workers, e.g. "gpu-a100")
    #: one of MIXOPT_QUEUES (a queue no worker consumes would leave the jobs pending forever)
    queue: Annotated[str, AfterValidator(queue_name)] = Field(
        default="gpu", pattern=r"^[A-Za-z0-9_.-]{1,64}$"
    )

    @model_validator(mode="after")
    def _budget(self) -> SwarmCreate:
        if (self.train_steps is None) == (self.train_tokens is None):
            raise ValueError("give exactly one of train_steps or train_tokens")
        per_step, settings = self.batch_size * self.block_size, get_settings()
        if per_step > settings.max_tokens_per_step:
            raise ValueError(
                f"batch_size x block_size = {per_step} tokens per step; at most "
                f"{settings.max_tokens_per_step} (MIXOPT_MAX_TOKENS_PER_STEP)"
            )
        if (
            self.train_tokens is not None
            and -(-self.train_tokens // per_step) > settings.max_train_steps
        ):
            raise ValueError(
                f"train_tokens {self.train_tokens} at {per_step} tokens per step is more than "
                f"{settings.max_train_steps} steps (MIXOPT_MAX_TRAIN_STEPS)"
            )
        if self.strategy == "fixed" and not self.mixtures:
            raise ValueError("strategy fixed needs mixtures")
        if (
            self.mixtures is not None
            and self.count is not None
            and len(self.mixtures) != self.count
        ):
            raise ValueError(f"mixtures has {len(self.mixtures)} entries but count is {self.count}")
        return self


class SwarmAccepted(Schema):
    tag: str
    #: the runs planned now (strategy rounds: round 1's)
    run_ids: list[int]
    jobs: list[JobPublic]
    #: strategy rounds: the job that plans every later round; its ``params.rounds`` lists the
    #: rounds (run ids, runs trained, best predicted mixture and its interval after each)
    rounds_job: JobPublic | None = None
