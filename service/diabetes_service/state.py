"""What one worker knows about itself: the model once loaded, and whether it may take traffic."""

from __future__ import annotations

from dataclasses import dataclass, field

from diabetes_service.core import ScoringCore
from diabetes_service.http import HTTPError
from diabetes_service.settings import ServiceSettings

NOT_READY_HEADERS = [(b"retry-after", b"1")]


@dataclass
class ServiceState:
    settings: ServiceSettings
    core: ScoringCore | None = None
    warm: bool = False  # loaded and has answered a warm-up prediction
    draining: bool = False  # SIGTERM received: finish what is in flight, take nothing new
    model_name: str = field(init=False)
    model_version: str = field(init=False)

    def __post_init__(self) -> None:
        self.model_name = self.settings.model_name or "model"
        self.model_version = self.settings.model_version or "local"

    @property
    def auth_enabled(self) -> bool:
        return self.settings.auth_enabled

    @property
    def ready(self) -> bool:
        return self.warm and not self.draining

    def require_core(self) -> ScoringCore:
        if self.core is None or not self.warm:
            raise HTTPError(503, "the model is still loading; retry shortly", headers=NOT_READY_HEADERS)
        return self.core
