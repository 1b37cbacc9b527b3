"""Sphinx configuration of the recsim-env documentation (``make docs``)."""
import logging
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "recsim-env"
author = "recsim-env contributors"
copyright = "recsim-env contributors, MIT License"
release = "0.1.0"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]
nitpicky = False

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Heavy or optional dependencies the API pages do not need to execute.
autodoc_mock_imports = ["ray", "optuna", "rl_zoo3", "tianshou"]


html_theme = "furo"
html_title = "recsim-env"

_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
_API_PACKAGES = [
    ("recsim_env", "The environment: `recsim_env`"),
    ("agents", "The agent: `agents`"),
    ("experiments", "Command lines and studies: `experiments`"),
]


def _modules(package: str) -> list[str]:
    """Every module of a package on disk, subpackages included (private ``_x`` modules left out)."""
    found = []
    base = os.path.join(_ROOT, package)
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if os.path.exists(os.path.join(folder, d, "__init__.py")))
        rel = os.path.relpath(folder, _ROOT).replace(os.sep, ".")
        for name in sorted(files):
            if name.endswith(".py") and name != "__init__.py" and not name.startswith("_"):
                found.append(f"{rel}.{name[:-3]}")
    return found


def _api_source(app, docname, source):
    if docname != "api":
        return
    text = [source[0], ""]
    for package, title in _API_PACKAGES:
        text += [f"## {title}", "", "```{eval-rst}", f".. automodule:: {package}", "   :no-members:", "```", ""]
        for module in _modules(package):
            text += [f"### `{module}`", "", "```{eval-rst}", f".. automodule:: {module}", "```", ""]
    source[0] = "\n".join(text)


class _DocstringMarkupFilter(logging.Filter):
    """Drop docutils' markup complaints about docstrings, and only those.

    The docstrings are written for ``help()`` (``:param:`` fields, but also plain-text tables with
    ``|`` and ``-`` that reStructuredText reads as line blocks and substitutions); autodoc renders
    them as well as docutils can. Every other warning (the Markdown pages, their links and
    cross-references, missing modules) still fails the build. The count is printed at the end.
    """

    dropped: set[tuple[str, str]] = set()  # each record passes every handler: count it once

    def filter(self, record: logging.LogRecord) -> bool:
        location = str(getattr(record, "location", "") or "")
        if "docstring of " in location and record.levelno >= logging.WARNING:
            self.dropped.add((location, record.getMessage()))
            return False
        return True


def _report_dropped(app, exception):
    if _DocstringMarkupFilter.dropped:
        files = sorted({loc.split(":docstring")[0].rsplit("/", 1)[-1] for loc, _ in _DocstringMarkupFilter.dropped})
        print(f"docstring markup notes not shown: {len(_DocstringMarkupFilter.dropped)} "
              f"(in {', '.join(files)})")


def setup(app):
    app.connect("source-read", _api_source)
    app.connect("build-finished", _report_dropped)
    for handler in logging.getLogger("sphinx").handlers:
        handler.filters.insert(0, _DocstringMarkupFilter())  # before Sphinx counts the warning
