"""What one benchmark run measured, cell by cell."""

from __future__ import annotations

from dataclasses import dataclass

from loadtests.bench.wrk import WrkResult


@dataclass(frozen=True)
class Cell:
    """One server at one body size and one connection count."""

    server: str  # Server.key
    label: str
    rows: int
    connections: int
    wrk: WrkResult
    rss_mib: float
    ready_seconds: float
    # The server's own CPU (all its processes) per answered request during the measured run: unlike
    # req/s, barely moved by whatever else shares the cores.
    cpu_us_per_request: float

    @property
    def rows_per_s(self) -> float:
        return self.wrk.req_per_s * self.rows


@dataclass(frozen=True)
class Startup:
    """Seconds from start to the first 200 on the readiness route, and to every worker scoring."""

    ready: float
    scoring: float


@dataclass
class Results:
    cells: list[Cell]
    local_folder: Startup | None = None
    registry: Startup | None = None  # models:/ on the embedded store, first start (downloads)
    registry_cached: Startup | None = None  # the same URI again, its download cached

    def cell(self, server: str, rows: int, connections: int) -> Cell | None:
        for cell in self.cells:
            if (cell.server, cell.rows, cell.connections) == (server, rows, connections):
                return cell
        return None

    def max_rss(self, server: str) -> float | None:
        values = [cell.rss_mib for cell in self.cells if cell.server == server]
        return max(values) if values else None
