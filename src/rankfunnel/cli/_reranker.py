"""Reranker options shared by every command that can rerank, and the CLI's one call into the resolver.

The environment is read here (through typer's ``envvar=``), never in the library: ``RANKFUNNEL_CPU_ROUTE``
(``--cpu-route``), ``RANKFUNNEL_RERANKER_API_KEY`` (``--reranker-api-key``; ``ZEROENTROPY_API_KEY`` is
honoured for the ZeroEntropy API), ``HF_HUB_OFFLINE`` (``--offline``) and ``HF_ENDPOINT`` (the hub probed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rankfunnel.errors import InvalidInputError

if TYPE_CHECKING:
    from rankfunnel.rerank.base import BaseReranker
    from rankfunnel.rerank.resolve import Resolution

RerankerApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--reranker-api-key",
        envvar=["RANKFUNNEL_RERANKER_API_KEY", "RANKFUNNEL_REMOTE_API_KEY"],
        show_envvar=True,
        help="API key of a remote reranker (--reranker remote:URL); for the ZeroEntropy API "
        "ZEROENTROPY_API_KEY also works. Not the service's own keys (serve --api-key).",
    ),
]
CpuRouteOpt = Annotated[
    str,
    typer.Option(
        "--cpu-route",
        envvar="RANKFUNNEL_CPU_ROUTE",
        show_envvar=True,
        help="How a BERT-style cross-encoder runs on a CPU: auto, or one of torch-fp32, torch-bf16, torch-int8, "
        "onnx-fp32, onnx-int8, openvino-fp32, openvino-bf16, openvino-int8.",
    ),
]
OfflineOpt = Annotated[
    bool,
    typer.Option(
        "--offline",
        envvar="HF_HUB_OFFLINE",
        show_envvar=True,
        help="Never use the model hub: load models from disk only (an unreachable hub is detected anyway).",
    ),
]


@dataclass(frozen=True)
class CliReranker:
    """What the CLI loaded: the reranker (None: stage 1 only), why not, and what the resolver decided."""

    model: BaseReranker | None
    reason: str | None
    resolution: Resolution
    offline: bool


def check_route(route: str) -> str:
    from rankfunnel.rerank.encoder_fast import ROUTES

    if route != "auto" and route not in ROUTES:
        raise InvalidInputError(
            f"--cpu-route (RANKFUNNEL_CPU_ROUTE) {route!r} is unknown; use auto or one of {', '.join(ROUTES)}."
        )
    return route


def api_key_for(spec: str | None, given: str | None) -> str | None:
    """``--reranker-api-key`` when given, else ``ZEROENTROPY_API_KEY`` when ``spec`` names that API."""
    if given:
        return given
    if not spec or "remote:" not in spec:
        return None
    from rankfunnel.rerank import split_stage
    from rankfunnel.rerank.remote import resolve_endpoint

    for part in spec.split(","):
        name, _ = split_stage(part.strip())
        if not name.startswith("remote:"):
            continue
        try:
            api, _url = resolve_endpoint(name[len("remote:"):])
        except Exception:  # noqa: BLE001 - a malformed URL is reported by the loader itself
            continue
        if api == "zeroentropy":
            return os.environ.get("ZEROENTROPY_API_KEY") or None
    return None


def resolve(
    spec: str | None,
    *,
    device: str | None,
    offline: bool,
    trained: str | Path | None = None,
    domain: str | None = None,
) -> tuple[Resolution, bool]:
    """Resolve once; when the pick needs the hub and it cannot be reached, resolve again offline."""
    from rankfunnel.rerank.resolve import hub_reachable, needs_hub, resolve_reranker

    res = resolve_reranker(spec, device=device, offline=offline, trained=trained, domain=domain)
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if not offline and needs_hub(res.spec) and not hub_reachable(endpoint):
        offline = True
        res = resolve_reranker(spec, device=device, offline=True, trained=trained, domain=domain)
    return res, offline


def load(
    spec: str | None,
    *,
    device: str | None,
    offline: bool,
    api_key: str | None,
    route: str,
    required: bool = False,
    trained: str | Path | None = None,
    domain: str | None = None,
) -> CliReranker:
    """Resolve and load the reranker of a command.

    ``required``: a command that measures or needs a reranker (``rerank``, ``eval``, ``bench``, ``calibrate``
    with a reranker named) raises instead of falling back to stage 1.
    """
    from rankfunnel.rerank import load_reranker, load_reranker_or_reason

    route = check_route(route)
    res, off = resolve(spec, device=device, offline=offline, trained=trained, domain=domain)
    if res.spec is None:
        if required and res.requested.lower() not in {"", "none", "off"}:
            raise InvalidInputError(res.reason)
        return CliReranker(None, res.reason, res, off)
    key = api_key_for(res.spec, api_key)
    if required:
        model = load_reranker(res.spec, device=device, offline=off, route=route, api_key=key)
        return CliReranker(model, None, res, off)
    model, reason = load_reranker_or_reason(
        res.spec, device=device, offline=off, warn=False, route=route, api_key=key
    )
    return CliReranker(model, reason, res, off)
