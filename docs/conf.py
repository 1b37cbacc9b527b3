"""Sphinx configuration of the recsim-env documentation (``make docs``)."""
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

# ignore-module-all: a module documents the names it defines, not the ones its __all__
# re-exports (recsim_env.simulator re-exports its former names from their new modules).
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
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


def _markdown_in_docstrings(app, what, name, obj, options, lines):
    """Turn the two Markdown constructs the docstrings use (as Gymnasium's do) into
    reStructuredText in place: fenced code blocks become ``code-block`` directives, pipe tables
    ``list-table`` directives. Everything else is reStructuredText already."""
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped.startswith("```"):
            language = stripped[3:].strip() or "text"
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            out += [f"{indent}.. code-block:: {language}", ""] + [f"{indent}   {b[len(indent):]}" for b in body] + [""]
            i += 1
            continue
        if stripped.startswith("|") and stripped.endswith("|") and i + 1 < len(lines) \
                and set(lines[i + 1].strip()) <= set("|-: "):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip()[1:-1].split("|")]
                if not set("".join(cells)) <= set("-: "):
                    rows.append(cells)
                i += 1
            out += [f"{indent}.. list-table::", f"{indent}   :header-rows: 1", ""]
            for row in rows:
                out += [f"{indent}   * - {row[0]}"] + [f"{indent}     - {c}" for c in row[1:]]
            out.append("")
            continue
        out.append(line)
        i += 1
    lines[:] = out


def setup(app):
    app.connect("source-read", _api_source)
    app.connect("autodoc-process-docstring", _markdown_in_docstrings)
