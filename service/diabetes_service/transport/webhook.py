"""`POST /hooks/mlflow`: MLflow registry webhooks trigger the same re-resolve as SIGHUP.

MLflow (3.3+, SQL-backed tracking servers) signs each delivery: `X-MLflow-Signature` is
`v1,<base64 HMAC-SHA256>` over `{delivery id}.{timestamp}.{body}` with the webhook's secret. A
delivery is taken only with a valid signature and a timestamp within MAX_AGE_SECONDS of this
machine's clock (a replayed old delivery is refused). The route exists only when
`DIABETES_WEBHOOK_SECRET` is set; it needs no API key, since MLflow cannot send one: the
signature is its proof.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import signal
import time

from diabetes_service import board
from diabetes_service.protocols.http import HTTPError, Request, Response, json_response

MAX_AGE_SECONDS = 300
SIGNATURE_VERSION = "v1"


class MLflowWebhook:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def routes(self) -> list[tuple[str, str, object, bool]]:
        return [("POST", "/hooks/mlflow", self.deliver, True)]

    async def deliver(self, request: Request) -> Response:
        self.verify(request)
        if board.current is None:
            raise HTTPError(503, "this process serves alone: nothing to re-resolve")
        os.kill(os.getppid(), signal.SIGHUP)  # the supervisor resolves again, as on SIGHUP
        return json_response({"status": "re-resolving the model"}, status=202)

    def verify(self, request: Request) -> None:
        signature = _header(request, b"x-mlflow-signature")
        timestamp = _header(request, b"x-mlflow-timestamp")
        delivery = _header(request, b"x-mlflow-delivery-id")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_AGE_SECONDS:
            raise HTTPError(401, f"X-MLflow-Timestamp: must be within {MAX_AGE_SECONDS} s of now", "X-MLflow-Timestamp")
        signed = b"%s.%s.%s" % (delivery.encode(), timestamp.encode(), request.body)
        expected = base64.b64encode(hmac.new(self._secret, signed, hashlib.sha256).digest()).decode()
        version, _, sent = signature.partition(",")
        if version != SIGNATURE_VERSION or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise HTTPError(401, "X-MLflow-Signature: does not match this delivery", "X-MLflow-Signature")


def _header(request: Request, name: bytes) -> str:
    value = request.header(name)
    if not value:
        title = "-".join(part.capitalize() for part in name.decode().split("-")).replace("Mlflow", "MLflow")
        raise HTTPError(401, f"{title}: missing (a signed MLflow webhook delivery is required)", title)
    return value.decode("latin-1")
