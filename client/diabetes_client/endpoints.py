"""The service's URLs, derived from whichever URL the caller was given.

A service root (``http://127.0.0.1:8080``), an Azure ML AKS scoring URI
(``http://<ip>:80/api/v1/service/<name>/score``) and an Azure ML online-endpoint scoring URI
(``https://<endpoint>.<region>.inference.ml.azure.com/score``) all name the same shape of service:
the scoring route is ``<base>/score`` and the description and probes sit beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class Endpoints:
    """Every URL the client calls.

    Attributes:
        base: the service's root (no trailing slash): the prefix every other URL shares.
        score: where ``POST`` scoring requests go.
        swagger: the OpenAPI description (``/swagger.json``).
        live: the liveness probe (``GET /`` answers ``Healthy``).
        ready: the readiness probe (``/health/ready``).
    """

    base: str
    score: str
    swagger: str
    live: str
    ready: str

    @classmethod
    def from_url(cls, url: str) -> Endpoints:
        """Derive every URL from a service root or a scoring URI ending in ``/score``."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {url!r}")
        path = parts.path.rstrip("/")
        if path.endswith("/score"):
            path = path[: -len("/score")]
        base = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        # A query string (some gateways put a version or a code there) belongs to the scoring call.
        score = urlunsplit((parts.scheme, parts.netloc, path + "/score", parts.query, ""))
        return cls(
            base=base,
            score=score,
            swagger=base + "/swagger.json",
            live=base + "/",
            ready=base + "/health/ready",
        )
