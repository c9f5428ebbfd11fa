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

    @property
    def rows_per_s(self) -> float:
        return self.wrk.req_per_s * self.rows


@dataclass
class Results:
    cells: list[Cell]
    ready_local_folder: float | None = None
    ready_registry: float | None = None  # models:/ on the embedded store, first start (downloads)
    ready_registry_cached: float | None = None

    def cell(self, server: str, rows: int, connections: int) -> Cell | None:
        for cell in self.cells:
            if (cell.server, cell.rows, cell.connections) == (server, rows, connections):
                return cell
        return None

    def max_rss(self, server: str) -> float | None:
        values = [cell.rss_mib for cell in self.cells if cell.server == server]
        return max(values) if values else None
