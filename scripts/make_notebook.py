"""Write the notebooks of ``examples/`` from their scripts, the source of truth.

    $ python scripts/make_notebook.py            # examples/*.py -> examples/*.ipynb
    $ python scripts/make_notebook.py --check    # exit 1 if a committed notebook differs

A script is split into cells at lines starting with ``# %%``; ``# %% [markdown]`` starts a
markdown cell whose lines lose their leading ``# ``. The notebook has no outputs and stable
cell ids, so the same script always gives the same file and `tests/test_examples.py` can
compare them byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _strip_blank_lines(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _markdown_line(line: str, where: str) -> str:
    if line.startswith("# "):
        return line[2:]
    if line.rstrip() in ("#", ""):
        return ""
    raise ValueError(f"{where}: a markdown cell line must start with '# ', got {line!r}")


def script_to_notebook(script: str, name: str = "<script>") -> nbformat.NotebookNode:
    """The notebook of a ``# %%`` script: its cells in order, without outputs."""
    cells: list[tuple[str, list[str]]] = []
    for number, line in enumerate(script.splitlines(), start=1):
        if line.startswith("# %%"):
            marker = line[len("# %%") :].strip()
            if marker not in ("", "[markdown]"):
                raise ValueError(f"{name}:{number}: unknown cell marker {line!r}")
            cells.append(("markdown" if marker else "code", []))
        elif not cells:
            if line.strip():
                raise ValueError(f"{name}:{number}: text before the first '# %%' cell marker")
        else:
            kind, lines = cells[-1]
            lines.append(_markdown_line(line, f"{name}:{number}") if kind == "markdown" else line)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for index, (kind, lines) in enumerate(cells):
        source = "\n".join(_strip_blank_lines(lines))
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell.id = f"cell-{index:02d}"  # nbformat draws random ids; fixed ones keep the file reproducible
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def render(script_path: Path) -> str:
    """The text of the notebook made from ``script_path``."""
    return nbformat.writes(script_to_notebook(script_path.read_text(), str(script_path))) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="*", type=Path, help="scripts to convert (default: examples/*.py)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook is out of date")
    args = parser.parse_args(argv)
    stale = []
    for script in args.scripts or sorted(EXAMPLES.glob("*.py")):
        notebook = script.with_suffix(".ipynb")
        text = render(script)
        if notebook.is_file() and notebook.read_text() == text:
            continue
        if args.check:
            stale.append(notebook)
        else:
            notebook.write_text(text)
            print(f"wrote {notebook}")
    for notebook in stale:
        print(f"{notebook} differs from its script; run: python scripts/make_notebook.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
