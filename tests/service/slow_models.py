"""Estimators that take their time, to observe readiness and draining on a real process."""

from __future__ import annotations

import time

from sklearn.linear_model import Ridge


class SlowToLoadRidge(Ridge):
    """Unpickling takes LOAD_SECONDS: the service is live but not ready meanwhile."""

    LOAD_SECONDS = 3.0

    def __setstate__(self, state: dict) -> None:
        time.sleep(self.LOAD_SECONDS)
        super().__setstate__(state)


class BrieflySlowToLoadRidge(SlowToLoadRidge):
    """Unpickled twice at a first start (the preparation child verifies it, then each worker loads
    it), so 3 s made ~9 s to warm: too near the 10 s a scoring call waits for a loading worker."""

    LOAD_SECONDS = 1.0


class SlowToPredictRidge(Ridge):
    """Every prediction takes PREDICT_SECONDS, so that requests are in flight when SIGTERM comes."""

    PREDICT_SECONDS = 1.0

    def predict(self, X):
        time.sleep(self.PREDICT_SECONDS)
        return super().predict(X)


class SlowishRidge(Ridge):
    """Every call takes 20 ms whatever its rows, as a heavy model's would: requests pile up meanwhile."""

    PREDICT_SECONDS = 0.02

    def predict(self, X):
        time.sleep(self.PREDICT_SECONDS)
        return super().predict(X)
