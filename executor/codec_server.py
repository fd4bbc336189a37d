"""`codec-server`: Temporal's remote codec protocol, so the Web UI (and `temporal` CLI) show
encrypted histories decrypted, to whoever holds the token.

The protocol (temporalio samples-go, codec-server/protocol.md): `POST …/decode` and `POST …/encode`
with a `Payloads` message as protobuf JSON, answered in kind; only the last path segment says which.
The Temporal UI calls it from the browser, so the UI's origin must be allowed (`CODEC_CORS_ORIGINS`).

Access: this endpoint turns ciphertext into plaintext for anyone who may call it, so every call
needs `CODEC_SERVER_TOKEN`, either
- as `Authorization: Bearer <token>` (scripts, a reverse proxy, the CLI's `--codec-auth`), or
- as the path prefix: endpoint `http://host:port/<token>`, so the browser calls `/<token>/decode`.
  The UI of a dev server (`--ui-codec-endpoint`) has no way to add a header, so this is how the
  UI authenticates; whoever can load that UI's settings can read the endpoint, which is the same
  audience the UI shows decrypted histories to anyway (docs/security.md).
Refusals are 401 and logged with the caller's address, never the token. No access log: request
lines would carry the token.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
from collections.abc import Sequence
from typing import Any

import uvicorn
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import DataConverter, PayloadConverter

from adapters import encryption, temporal_client
from adapters.payload_storage import StoredPayloadUnreadable
from adapters.settings import Settings
from core.errors import ContractError

log = logging.getLogger(__name__)

ACTIONS = ("encode", "decode")


def _authorized(request: Request, prefix: str, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    offered = [credentials.strip()] if scheme.lower() == "bearer" else []
    if prefix:
        offered.append(prefix)
    # compare_digest on every offer: no early exit that would time the token
    return any([hmac.compare_digest(o.encode(), token.encode()) for o in offered])


class PayloadsAsIs(PayloadConverter):
    """Values are payloads already: so `DataConverter.decode` runs only the payload stages (the
    stored-payload references resolved, then the codec) and hands the payloads back."""

    def to_payloads(self, values: Sequence[Any]) -> list[Payload]:
        return list(values)

    def from_payloads(self, payloads: Sequence[Payload], type_hints: list[type] | None = None) -> list[Any]:
        return list(payloads)


def build_app(converter: DataConverter, token: str, origins: list[str]) -> Starlette:
    """`converter`'s payload stages, applied to raw payloads: decode resolves payloads stored
    outside the history too, so the UI shows a long transcript, not a reference to it."""
    converter = dataclasses.replace(converter, payload_converter_class=PayloadsAsIs)
    if not token:
        raise ContractError("the codec server needs a token (CODEC_SERVER_TOKEN): it decrypts whatever it is sent")

    async def codec_call(request: Request) -> Response:
        *prefix, action = request.path_params["path"].strip("/").split("/")
        if action not in ACTIONS:
            return JSONResponse({"error": "not found: POST …/encode or …/decode"}, status_code=404)
        if not _authorized(request, "/".join(prefix), token):
            client = request.client.host if request.client else "?"
            log.warning("codec server: refused %s from %s (no valid token)", action, client)
            return JSONResponse({"error": "unauthorized: a valid codec server token is required"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        try:
            payloads = json_format.Parse(await request.body(), Payloads())
        except (json_format.ParseError, DecodeError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"expected a Payloads message as protobuf JSON: {exc}"}, status_code=400)
        try:
            if action == "decode":
                out = await converter.decode(payloads.payloads)
            else:
                out = await converter.encode(list(payloads.payloads))
        except (encryption.DecryptionError, StoredPayloadUnreadable) as exc:
            log.warning("codec server: %s failed: %s", action, exc)
            return JSONResponse({"error": str(exc)}, status_code=400)
        log.debug("codec server: %s %d payloads (namespace %s)", action, len(out), request.headers.get("x-namespace", "?"))
        body = json_format.MessageToJson(Payloads(payloads=out), indent=None)
        return Response(body, media_type="application/json")

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    cors = Middleware(
        CORSMiddleware, allow_origins=origins, allow_methods=["POST"], allow_headers=["*"],
        allow_credentials=True, max_age=600,
    )
    return Starlette(
        routes=[Route("/health", health, methods=["GET"]), Route("/{path:path}", codec_call, methods=["POST"])],
        middleware=[cors],
    )


def app_from_settings(settings: Settings) -> Starlette:
    ring = encryption.key_ring(settings)
    if ring is None:
        raise ContractError("the codec server has nothing to decrypt with: set ENCRYPTION_KEYS or ENCRYPTION_KEY_FILE")
    return build_app(temporal_client.data_converter(settings), settings.codec_server_token.get_secret_value(), settings.codec_cors_origins)


async def serve(settings: Settings) -> None:
    """Until SIGINT or SIGTERM (uvicorn handles both)."""
    app = app_from_settings(settings)
    config = uvicorn.Config(
        app, host=settings.codec_server_host, port=settings.codec_server_port,
        access_log=False, log_config=None, lifespan="off", server_header=False,
    )
    ring = encryption.key_ring(settings)
    assert ring is not None  # app_from_settings refused otherwise
    log.info(
        "codec server on http://%s:%d (keys %s, current %s); CORS origins: %s",
        settings.codec_server_host, settings.codec_server_port, ", ".join(ring.key_ids), ring.current,
        json.dumps(settings.codec_cors_origins),
    )
    await uvicorn.Server(config).serve()
