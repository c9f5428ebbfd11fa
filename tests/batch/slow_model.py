"""A model that takes its time per call, so that a batch job can be killed while it runs."""

from __future__ import annotations

import time

from sklearn.linear_model import Ridge


class PausingRidge(Ridge):
    """Every predict call takes PAUSE_SECONDS: a job of many small files runs for seconds."""

    PAUSE_SECONDS = 0.25

    def predict(self, X):
        time.sleep(self.PAUSE_SECONDS)
        return super().predict(X)
