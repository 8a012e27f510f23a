"""``aucli demo``: the main job end to end on what ships with aucli, in one report.

:mod:`aucli.demo.config` says what the demo makes and found, :mod:`aucli.demo.run` runs the stages, :mod:`aucli.demo.labels_audit` audits the corpus's labels
and scores the queue against the injected noise, :mod:`aucli.demo.figures` draws the plots and the
labelled video, and :mod:`aucli.demo.report` writes ``DIR/report/index.html``.
"""

from aucli.demo.config import DEFAULT_BASE, RECIPE_PATH, DemoConfig, DemoResult
from aucli.demo.run import run_demo

__all__ = ["DEFAULT_BASE", "RECIPE_PATH", "DemoConfig", "DemoResult", "run_demo"]
