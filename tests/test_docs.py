"""The documentation: every Python example of README.md and docs/**/*.md runs, and every figure
rendered from ``results/`` is up to date.

Code blocks are collected with mktestdocs (``grab_code_blocks``): every block fenced as
```` ```python ```` runs, the blocks of one file in order and in one namespace (a page reads top to
bottom), on the real ML-100K of ``$MOVIELENS_DATA`` (``tests/conftest.py``). Blocks fenced as
```` ```python skip ```` are shown but not run; the count is printed and kept small. Bash blocks
are never run.

Budget: examples are written with the budgets a user would run (``model.learn(600_000)``). Here
every ``learn`` is capped at ``RECSIM_DOCS_MAX_STEPS`` environment steps (default 256; SB3 still
completes a started rollout), the rollouts of PPO, A2C and MaskablePPO at
``RECSIM_DOCS_MAX_ROLLOUT`` steps per environment (default 32) and next-item pre-training at
``RECSIM_DOCS_MAX_PRETRAIN`` gradient steps (default 8), so a page runs in seconds; the code paths
are the examples' own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

mktestdocs = pytest.importorskip("mktestdocs")

from experiments import docs_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FILES = docs_results.markdown_files(ROOT)
MAX_STEPS = int(os.environ.get("RECSIM_DOCS_MAX_STEPS", "256"))
MAX_PRETRAIN = int(os.environ.get("RECSIM_DOCS_MAX_PRETRAIN", "8"))
MAX_ROLLOUT = int(os.environ.get("RECSIM_DOCS_MAX_ROLLOUT", "32"))
_SKIPPED = re.compile(r"^```python skip\s*$", re.M)


def _blocks(path: Path) -> list[str]:
    return mktestdocs.grab_code_blocks(path.read_text(encoding="utf-8"), lang="python")


def test_results_blocks_are_fresh():
    stale = docs_results.stale_blocks(ROOT)
    assert not stale, ("stale generated blocks (run `python -m experiments.docs_results`):\n"
                       + "\n".join(stale))


def test_every_prose_figure_of_the_result_pages_is_in_a_file_they_cite():
    pages = docs_results.traced_pages(ROOT)
    assert ROOT / "docs" / "results" / "table1.md" in pages
    untraced = [line for page in pages for line in docs_results.untraced_figures(page, ROOT)]
    assert not untraced, "figures typed without a cited results/ file:\n" + "\n".join(untraced)


def test_untraced_figures_finds_a_figure_missing_from_the_cited_file(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "run.csv").write_text("model,p10\nA,0.230149\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "From `results/run.csv`: P@10 0.2301 (or 0.23), not 0.2299; +0.0002 and 1.5x are derived.\n"
        "<!-- results:x start -->\n0.7777 is rendered\n<!-- results:x end -->\n"
        "```python\nlr = 0.9\n```\nAn uncited 0.51 and `0.42` in code.\n", encoding="utf-8")
    assert docs_results.untraced_figures(page, tmp_path) == ["page.md:1: 0.2299", "page.md:8: 0.51"]


def test_every_command_the_docs_and_result_files_cite_exists():
    """``python -m <module>`` of this project and ``make <target>`` in the README, the docs and the
    committed result pages name a module and a Makefile target that exist (a moved study would
    leave its old command in the pages)."""
    import importlib.util

    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))
    cited = [*FILES, *(path for ext in ("md", "json", "jsonl", "txt") for path in sorted((ROOT / "results").rglob(f"*.{ext}")))]
    missing = []
    for path in cited:
        text = path.read_text(encoding="utf-8")
        for module in set(re.findall(r"python -m ((?:experiments|agents|recsim_env)(?:\.\w+)*)", text)):
            if importlib.util.find_spec(module) is None:
                missing.append(f"{path.relative_to(ROOT)}: python -m {module}")
        for target in set(re.findall(r"`make ([a-z][\w-]*)", text)):
            if target not in targets:
                missing.append(f"{path.relative_to(ROOT)}: make {target}")
    assert not missing, "commands that do not exist:\n" + "\n".join(sorted(missing))


def test_every_results_marker_is_known():
    for path in FILES:
        docs_results.render_file(path)  # raises KeyError on an unknown block name


def test_readme_has_the_headline_table_and_is_short():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "<!-- results:table1 start -->" in text
    assert len(text.splitlines()) <= 200


def test_few_blocks_are_skipped(capsys):
    counts = {p.relative_to(ROOT).as_posix(): (len(_blocks(p)), len(_SKIPPED.findall(p.read_text(encoding="utf-8"))))
              for p in FILES}
    run, skipped = sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
    with capsys.disabled():
        print(f"\ndocs code blocks: {run} run, {skipped} skipped (```python skip)")
    assert run >= 10
    assert skipped <= 3


@pytest.fixture
def small_budgets(monkeypatch):
    """Cap ``learn`` and next-item pre-training (see the module docstring)."""
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    from agents.supervised import NextItemMixin

    setup_learn = BaseAlgorithm._setup_learn  # every SB3 learn() takes its budget from here

    def capped_setup_learn(self, total_timesteps, *args, **kwargs):
        return setup_learn(self, min(int(total_timesteps), MAX_STEPS), *args, **kwargs)

    init = OnPolicyAlgorithm.__init__

    def capped_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.n_steps > MAX_ROLLOUT:  # a PPO / A2C rollout of at most MAX_ROLLOUT steps per env
            self.n_steps = MAX_ROLLOUT
            if hasattr(self, "rollout_buffer"):  # A2C builds its model here, PPO after its own settings
                self._setup_model()

    pretrain = NextItemMixin.pretrain

    def capped_pretrain(self, gradient_steps=None, batch_size=None):
        remaining = max(self.pretrain_steps - self.pretrained_steps, 0) if gradient_steps is None else gradient_steps
        losses = pretrain(self, min(int(remaining), MAX_PRETRAIN), batch_size)
        if gradient_steps is None:
            self.pretrained_steps = max(self.pretrained_steps, self.pretrain_steps)
        return losses

    monkeypatch.setattr(BaseAlgorithm, "_setup_learn", capped_setup_learn)
    monkeypatch.setattr(OnPolicyAlgorithm, "__init__", capped_init)
    monkeypatch.setattr(NextItemMixin, "pretrain", capped_pretrain)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("path", [p for p in FILES if _blocks(p)], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_blocks_run(path: Path, small_budgets, monkeypatch, tmp_path):
    if not os.environ.get("MOVIELENS_DATA"):
        pytest.skip("the examples need the real MovieLens files ($MOVIELENS_DATA)")
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    namespace: dict = {"__name__": "__main__"}
    for i, block in enumerate(_blocks(path)):
        try:
            exec(compile(block, f"{path.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # the failing block, in the report
            raise AssertionError(f"{path.relative_to(ROOT)}, Python block {i}:\n{block}") from exc
