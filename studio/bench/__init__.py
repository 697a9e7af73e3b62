"""The benchmark suite: quality, latency, cold start, memory and cost, then a recommendation.

`eval/run.py` and the app's Benchmark tab both call `run_suite`; both render its `Summary`
through `studio.bench.table`.
"""

from studio.bench.config import SuiteConfig, load_suite_file
from studio.bench.recommend import cost_per_1000, pareto_front, recommend
from studio.bench.results import Summary, VariantRow
from studio.bench.store import list_runs, load_summary
from studio.bench.suite import exit_code, run_suite

__all__ = ["SuiteConfig", "Summary", "VariantRow", "cost_per_1000", "exit_code", "list_runs", "load_suite_file",
           "load_summary", "pareto_front", "recommend", "run_suite"]
