"""What an export is made of (:class:`MixtureExport`, :class:`Bundle`) and what the writers
share: rounded weights, the token budget, epoch caps, each domain's paths for a trainer."""

from __future__ import annotations

import io
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

import yaml

MEDIA = {
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".py": "text/x-python",
    ".txt": "text/plain",
}


class ExportError(ValueError):
    """Something a format needs is missing or unusable; ``field`` names where to fix it (the
    server answers a 422 naming it)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass
class MixtureExport:
    """What is exported: the weights and everything the trainers read besides them.

    ``domains`` are the project's domains in order, as dicts with ``name``, ``token_count``,
    ``documents``, ``source`` and ``trainer_paths``. ``constraints`` is the project's
    constraints dict; ``scale`` the recommendation's target scale (``model_params``,
    ``train_tokens``, ``train_steps``). ``schedule`` is an online session's trajectory
    ``[(step, weights), ...]``; ``origin`` describes where the mixture came from (JSON only).
    """

    mixture: dict[str, float]
    domains: list[dict[str, Any]]
    constraints: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)
    objective: dict[str, float] | None = None
    schedule: list[tuple[int, dict[str, float]]] | None = None
    slug: str = "mixture"
    #: a staged recommendation's phases (``name``, ``tokens``, ``start_tokens``,
    #: ``mixture_by_domain``)
    phases: list[dict[str, Any]] | None = None
    #: one phase of a staged export (set by :func:`mixopt.exports.render` for per-phase
    #: writers): where it starts in the whole training, in tokens, and the tokens of each
    #: domain the earlier phases read (a reader that streams files skips them)
    start_tokens: int = 0
    read_before: dict[str, float] | None = None


@dataclass
class Bundle:
    """The files of one export: ``{filename: text}`` in the order a person reads them, and
    ``notes``: what the trainer will not do as mixopt assumes (the API sends them in the
    ``X-Mixopt-Notes`` header too)."""

    files: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def media_type(self, name: str) -> str:
        return MEDIA.get(os.path.splitext(name)[1], "text/plain")

    def zip_bytes(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, text in self.files.items():
                info = zipfile.ZipInfo(
                    name, date_time=(2026, 1, 1, 0, 0, 0)
                )  # byte-identical re-exports
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, text)
        return buf.getvalue()


def rounded_weights(mixture: dict[str, float], digits: int = 6) -> dict[str, float]:
    """Weights rounded to ``digits`` decimals that still sum to exactly 1 at that precision
    (largest-remainder rounding), so trainers that check the sum accept them."""
    if not mixture:
        return {}
    scale = 10**digits
    total = math.fsum(mixture.values())
    if not total > 0 or not math.isfinite(total):
        raise ValueError("the mixture's weights sum to zero")
    exact = {k: v / total * scale for k, v in mixture.items()}
    floors = {k: math.floor(x) for k, x in exact.items()}
    missing = scale - sum(floors.values())
    for k in sorted(exact, key=lambda k: exact[k] - floors[k], reverse=True)[:missing]:
        floors[k] += 1
    return {k: floors[k] / scale for k in mixture}


# -- what the project says ------------------------------------------------------------------
def weights_of(spec: MixtureExport) -> dict[str, float]:
    names = [d["name"] for d in spec.domains]
    unknown = sorted(set(spec.mixture) - set(names))
    if unknown:
        raise ExportError(
            f"the mixture names domains the project does not have: {unknown}", "mixture"
        )
    return rounded_weights({n: float(spec.mixture.get(n, 0.0)) for n in names})


def field_of(spec: MixtureExport, name: str) -> str:
    i = next(i for i, d in enumerate(spec.domains) if d["name"] == name)
    return f"domains[{i}]"


def weighted_domains(
    spec: MixtureExport, weights: dict[str, float]
) -> list[tuple[dict[str, Any], float]]:
    by_name = {d["name"]: d for d in spec.domains}
    return [(by_name[n], w) for n, w in weights.items() if w > 0]


def constraint(spec: MixtureExport, key: str, fmt: str, what: str) -> Any:
    value = (spec.constraints or {}).get(key)
    if value is None:
        raise ExportError(
            f"the {fmt} export needs {what}: set constraints.{key} on the project",
            f"constraints.{key}",
        )
    return value


def token_budget(spec: MixtureExport, fmt: str) -> int:
    """Tokens to train on: the recommendation's target scale (``train_tokens``, or
    ``train_steps`` x ``constraints.global_batch_tokens``), else ``constraints.target_tokens``."""
    scale, cons = spec.scale or {}, spec.constraints or {}
    if scale.get("train_tokens"):
        return int(scale["train_tokens"])
    if scale.get("train_steps") and cons.get("global_batch_tokens"):
        return int(scale["train_steps"]) * int(cons["global_batch_tokens"])
    if cons.get("target_tokens"):
        return int(cons["target_tokens"])
    raise ExportError(
        f"the {fmt} export needs a token budget: the recommendation's target_scale.train_tokens "
        "(or train_steps with constraints.global_batch_tokens) or constraints.target_tokens",
        "constraints.target_tokens",
    )


def max_epochs(spec: MixtureExport, name: str) -> float | None:
    """The domain's repetition cap (``max_epochs_per_domain``, else ``max_epochs``), or None:
    the science's answer (:meth:`mixopt.mixing.constraints.Constraints.epoch_caps`)."""
    from mixopt.mixing.constraints import Constraints  # lazy: mixopt.mixing loads every estimator

    cons = spec.constraints or {}
    c = Constraints.for_epochs(
        {name: None}, None, cons.get("max_epochs"), cons.get("max_epochs_per_domain")
    )
    return c.epoch_caps([name])[name]


def batch_phases(spec: MixtureExport) -> list[dict[str, Any]]:
    """The phases on whole batches, when the project gives ``global_batch_tokens``: each phase
    after the first starts on the batch nearest its start, the last ends on the first batch at
    or after the whole budget (a trainer runs whole steps, and OLMo-core rounds each config's
    ``requested_tokens`` up to a batch, spreading the rest over the sources: a phase of whole
    batches keeps its ratios exactly). A phase left with no batch is an :class:`ExportError`
    naming it. Without a batch size, the phases as they are."""
    phases = [dict(p) for p in spec.phases or []]
    batch = (spec.constraints or {}).get("global_batch_tokens")
    if not phases or not batch or int(batch) <= 0:
        return phases
    b = int(batch)
    total = math.fsum(float(p["tokens"]) for p in phases)
    starts = [0] + [int(round(float(p.get("start_tokens") or 0) / b)) for p in phases[1:]]
    ends = starts[1:] + [max(math.ceil(total / b - 1e-9), starts[-1])]
    for k, (p, a, z) in enumerate(zip(phases, starts, ends, strict=True)):
        if z <= a:
            raise ExportError(
                f"phase {k} ({p['name']!r}) is shorter than half a batch "
                f"(global_batch_tokens {b}): a trainer cannot run it",
                f"phases[{k}].tokens",
            )
        p["start_tokens"], p["tokens"] = a * b, (z - a) * b
    return phases


def phase_epoch_caps(spec: MixtureExport) -> list[dict[str, float]]:
    """Each phase's share of the project's epoch cap, for trainers that cap a source per config
    (OLMo-core's ``max_repetition_ratio`` / ``max_source_fraction``, one config per phase).

    The cap ``R_i`` is counted across phases (``sum_p w_{p,i} tokens_p <= R_i tokens_i``), so
    writing ``R_i`` into every phase's config would let the phases together repeat a domain up
    to ``P x R_i`` times. Phase ``p`` gets ``R_i x w_{p,i} tokens_p / sum_q w_{q,i} tokens_q``:
    the caps add up to ``R_i`` and each is at least what the phase's mixture needs (rounded up
    at 1e-6, so the trainer's integer token counts never fall below the need).
    """
    phases = batch_phases(spec)
    used = {
        d["name"]: sum(
            float(p["mixture_by_domain"].get(d["name"], 0.0)) * float(p["tokens"]) for p in phases
        )
        for d in spec.domains
    }
    out = []
    for p in phases:
        caps = {}
        for name, total in used.items():
            cap, share = (
                max_epochs(spec, name),
                float(p["mixture_by_domain"].get(name, 0.0)) * float(p["tokens"]),
            )
            if cap is not None and math.isfinite(cap) and total > 0 and share > 0:
                caps[name] = math.ceil(cap * share / total * 1e6) / 1e6
        out.append(caps)
    return out


def trained_parts(spec: MixtureExport, fmt: str) -> list[tuple[str, dict[str, float], float]]:
    """What the trainer reads, as ``(phase name, mixture, tokens)``: each phase of a staged
    recommendation, or the one mixture at :func:`token_budget` (``ExportError`` without one)."""
    if spec.phases:
        return [
            (str(p["name"]), dict(p["mixture_by_domain"]), float(p["tokens"])) for p in spec.phases
        ]
    return [("all", weights_of(spec), float(token_budget(spec, fmt)))]


def epochs_read(
    parts: list[tuple[dict[str, float], float]], token_counts: dict[str, Any]
) -> dict[str, float | None]:
    """Epochs of each domain over the whole training: ``sum_p w_{p,i} x tokens_p / tokens_i``
    (one mixture: ``w_i x budget / tokens_i``), None without a positive token count. The one
    figure the exports' notes and the dashboard show; for a staged recommendation it is the
    science's own ``epochs_used`` (:func:`mixopt.mixing.staged.recommend_staged`)."""
    out: dict[str, float | None] = {}
    for name, count in token_counts.items():
        used = math.fsum(float(m.get(name, 0.0)) * float(t) for m, t in parts)
        out[name] = used / float(count) if count and float(count) > 0 else None
    return out


def epoch_report(spec: MixtureExport, fmt: str) -> list[dict[str, Any]]:
    """Per domain with a weight somewhere: ``name``, ``epochs`` (:func:`epochs_read` over
    :func:`trained_parts`), ``cap`` (:func:`max_epochs`) and ``over`` (epochs above the cap)."""
    parts = [(m, t) for _, m, t in trained_parts(spec, fmt)]
    counts = {d["name"]: d.get("token_count") for d in spec.domains}
    epochs = epochs_read(parts, counts)
    rows = []
    for name in counts:
        if not any(float(m.get(name, 0.0)) > 0 for m, _ in parts):
            continue
        cap, e = max_epochs(spec, name), epochs[name]
        over = e is not None and cap is not None and e > cap * (1 + 1e-9)
        rows.append({"name": name, "epochs": e, "cap": cap, "over": over})
    return rows


def epoch_warnings(spec: MixtureExport, fmt: str = "json") -> list[str]:
    """The domains :func:`epoch_report` finds beyond their cap, or without tokens, in the words
    of :meth:`mixopt.mixing.constraints.Constraints.epoch_warnings` (a staged mixture's epochs
    are summed over its phases); none without a budget."""
    try:
        rows = epoch_report(spec, fmt)
    except ExportError:
        return []
    staged = f" over {len(spec.phases)} phases" if spec.phases else ""
    out = []
    for r in rows:
        name = r["name"]
        count = next(d.get("token_count") for d in spec.domains if d["name"] == name)
        # one mixture: the weight, as the science's warnings say it; phases: the sum over them
        used = "used" if spec.phases else f"weight {float(spec.mixture.get(name, 0.0)):.3f}"
        if count is None:
            out.append(f"{name}: {used} but no token count (availability unknown)")
        elif not count:
            out.append(f"{name}: {used} but the project has no tokens of it")
        elif r["over"]:
            cap = float(r["cap"])
            at, ratio = staged or f" at {used}", r["epochs"] / cap
            out.append(f"{name}: {r['epochs']:.2f} epochs{at}, {ratio:.1f}x its {cap:g}-epoch cap")
    return out


def trainer_paths(spec: MixtureExport, domain: dict[str, Any], fmt: str) -> list[str]:
    paths = (domain.get("trainer_paths") or {}).get(fmt) or []
    if not paths:
        f = field_of(spec, domain["name"])
        raise ExportError(
            f"domain {domain['name']!r} has no {fmt} paths: declare {f}.trainer_paths[{fmt!r}] "
            f"(the files {fmt} reads)",
            f"{f}.trainer_paths.{fmt}",
        )
    return [str(p) for p in paths]


BUILDERS = {
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".txt": "text",
    ".jsonl.gz": "json",
    ".json.gz": "json",
    ".txt.gz": "text",
    ".jsonl.zst": "json",
}


def raw_files(spec: MixtureExport, domain: dict[str, Any], fmt: str) -> tuple[list[str], str]:
    """The raw text files a trainer that tokenises itself reads (``trainer_paths[fmt]``, else
    the domain's ``source.path``), and the ``datasets`` builder for them."""
    src = domain.get("source") or {}
    f = field_of(spec, domain["name"])
    paths = [str(p) for p in (domain.get("trainer_paths") or {}).get(fmt) or []]
    if not paths:
        if not src.get("path"):
            raise ExportError(
                f"domain {domain['name']!r} has neither trainer_paths[{fmt!r}] nor a source path",
                f"{f}.trainer_paths.{fmt}",
            )
        paths = [str(src["path"])]
    declared = {"jsonl": "json", "parquet": "parquet", "txt": "text"}.get(
        src.get("format") or "auto"
    )
    builders = set()
    out = []
    for p in paths:
        ext = next(
            (e for e in sorted(BUILDERS, key=len, reverse=True) if p.lower().endswith(e)), None
        )
        if ext is None:
            if declared is None:
                raise ExportError(
                    f"cannot tell the file type of {p!r} (domain {domain['name']!r}): give files "
                    f"or globs ending in .jsonl/.parquet/.txt, or set {f}.source.format",
                    f"{f}.trainer_paths.{fmt}",
                )
            # a directory: every file of the declared type under it
            ext = {"json": ".jsonl", "parquet": ".parquet", "text": ".txt"}[declared]
            p = p.rstrip("/") + "/**/*" + ext
        builders.add(BUILDERS[ext])
        out.append(p)
    if len(builders) > 1:
        raise ExportError(
            f"domain {domain['name']!r} mixes file types {sorted(builders)}",
            f"{f}.trainer_paths.{fmt}",
        )
    return out, builders.pop()


def metric_domain(metric: str, names: set[str] | dict[str, Any]) -> str | None:
    """The domain a validation metric names (``<d>``, ``val_loss/<d>``, ``valid_<d>``,
    ``<d>_val_loss``, ``metric/<d>_val_loss``), or None. The metric itself first, then without
    its prefix, then without both, then without its suffix, so a domain whose own name looks like
    a prefix or suffix (``web_val_loss``, ``valid_set``) is read as itself."""
    bare = re.sub(r"^(metric/|val_loss/|valid_)", "", metric)
    for m in (metric, bare, re.sub(r"_val_loss$", "", bare), re.sub(r"_val_loss$", "", metric)):
        if m in names:
            return m
    return None


def objective_domains(spec: MixtureExport) -> dict[str, float]:
    """The objective's weights per domain, when every objective metric names a domain
    (:func:`metric_domain`)."""
    names = {d["name"] for d in spec.domains}
    out: dict[str, float] = {}
    for metric, w in (spec.objective or {}).items():
        m = metric_domain(metric, names)
        if m is None:
            return {}
        out[m] = out.get(m, 0.0) + float(w)
    return out


class _Dumper(yaml.SafeDumper):
    """``yaml.safe_dump``'s dumper, except for the style of some strings (see :func:`_str`)."""


#: what YAML readers take for a line break besides ``\n``/``\r``: NEL, LS, PS
_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")
#: strings a YAML 1.2 reader (core schema) takes for null, a boolean or a number, where YAML 1.1
#: (PyYAML) reads a string and writes it unquoted: ``0o17``, ``1e3``, ``+1``...
_YAML12_NOT_STR = re.compile(
    r"""null|Null|NULL|~|true|True|TRUE|false|False|FALSE
    |[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+
    |[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
    |[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN""",
    re.VERBOSE,
)


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """A string as a scalar that every YAML reader reads back as this string: double-quoted
    (NEL, LS and PS escaped as ``\\N``, ``\\L``, ``\\P``) when it holds one of
    :data:`_LINE_BREAKS`, since PyYAML writes them raw in plain and single-quoted scalars and
    its reader folds a raw NEL into a space; quoted when a YAML 1.2 reader would take it for
    something else (:data:`_YAML12_NOT_STR`); otherwise the style ``safe_dump`` picks."""
    style = '"' if _LINE_BREAKS.search(data) else "'" if _YAML12_NOT_STR.fullmatch(data) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def yaml_text(data: Any) -> str:
    """``data`` as block-style YAML, keys in order (what every YAML writer here emits): the
    safe dumper, Unicode written as is, every string reading back the same with
    ``yaml.safe_load`` (``tests/exports/test_names_roundtrip.py``)."""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1000,
    )
