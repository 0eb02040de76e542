"""The row reads the writer (Store) and the readers (Reader) share: one SQL each, over the
`query(sql, args) -> list[dict]` of whichever connection holds them."""
from __future__ import annotations

from .lookup import match_run


class RunQueries:
    def query(self, sql: str, args: tuple | list = ()) -> list[dict]:
        raise NotImplementedError

    def runs(self) -> list[dict]:
        return self.query("SELECT * FROM runs ORDER BY created DESC")

    def run(self, run_id: str) -> dict | None:
        """The run with this id, or the only run whose id starts with it."""
        return match_run(self.query, run_id)

    def stages(self, run_id: str | None = None) -> list[dict]:
        if run_id is None:
            return self.query("SELECT * FROM stages ORDER BY run_id, ord")
        return self.query("SELECT * FROM stages WHERE run_id = ? ORDER BY ord", [run_id])

    def metrics(self, run_id: str | None = None) -> list[dict]:
        if run_id is None:
            return self.query("SELECT * FROM metrics")
        return self.query("SELECT * FROM metrics WHERE run_id = ? ORDER BY iteration, checkpoint, task, metric", [run_id])

    def trials(self, run_id: str, iteration: int | None = None) -> list[dict]:
        if iteration is None:
            return self.query("SELECT * FROM sweeps WHERE run_id = ? ORDER BY id", [run_id])
        return self.query("SELECT * FROM sweeps WHERE run_id = ? AND iteration = ? ORDER BY id", [run_id, iteration])
