"""The optional parts of the install (pyproject extras) and a clear message when one is missing.

``pip install mixopt`` is the client and CLI front only (httpx, pydantic, typer, rich);
``mixopt[science]`` adds the estimators, ``mixopt[train]`` the proxy trainer,
``mixopt[server]`` the API, the workers and the dashboard, ``mixopt[all]`` everything.
"""

from __future__ import annotations

import importlib.util

#: the modules that stand for each extra (an import name, not a distribution name)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "science": ("numpy", "scipy", "sklearn", "lightgbm"),
    "train": ("numpy", "torch", "tokenizers"),
    "server": (
        "fastapi",
        "uvicorn",
        "sqlalchemy",
        "alembic",
        "celery",
        "jinja2",
        "pydantic_settings",
        "numpy",
        "scipy",
        "sklearn",
    ),
    # trainer callbacks and imports (mixopt.integrations)
    "hf": ("torch", "transformers", "accelerate"),
    "lightning": ("torch", "lightning"),
    "mlflow": ("mlflow",),
}


class MissingExtra(RuntimeError):
    """A feature whose optional dependencies are not installed; the message says what to install."""


def missing_modules(extra: str) -> list[str]:
    return [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, feature: str = "this command") -> None:
    """Raise :class:`MissingExtra` naming the pip command when ``extra`` is not installed."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtra(
            f"{feature} needs the '{extra}' extra: pip install 'mixopt[{extra}]' "
            f"(missing: {', '.join(missing)})"
        )
