"""Run the demo notebooks headless and write them out as HTML.

    python demo_notebooks/run_demo.py                 # quickstart -> demo_notebooks/_build/quickstart.html
    python demo_notebooks/run_demo.py --all --save    # every notebook; also save outputs in place

Each notebook runs top to bottom in a fresh python3 kernel (cwd: this folder,
with the repository on PYTHONPATH, so an uninstalled checkout works).  The
HTML shows the derivations as math and, where a cell was verbose, the
generated code in a collapsed <details> block: the static view of each cell (its live
inspector needs a kernel, and no widget state is stored).
"""
import argparse
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def execute(path, timeout=600, allow_errors=False, store_widget_state=False):
    """The notebook at path, run in a fresh kernel (a failing cell raises CellExecutionError
    unless allow_errors)."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)  # a fresh run stores its own widget state, if any
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    # no widget state: the live inspector needs its kernel anyway, and with saved state nbconvert
    # would load the widget manager from a CDN (and render the dead widget over the static view)
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout, allow_errors=allow_errors,
                            store_widget_state=store_widget_state,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env={**os.environ, "PYTHONPATH": pythonpath})
    return nb


def to_html(nb):
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nb)
    return body


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: quickstart.ipynb")
    parser.add_argument("--all", action="store_true", help="every notebook in demo_notebooks/")
    parser.add_argument("--save", action="store_true", help="write the outputs back into the notebooks")
    parser.add_argument("--out", type=Path, default=HERE / "_build", help="folder for the HTML files")
    args = parser.parse_args(argv)
    paths = sorted(HERE.glob("*.ipynb")) if args.all else args.notebooks or [HERE / "quickstart.ipynb"]
    args.out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        nb = execute(path.resolve())
        if args.save:
            nbformat.write(nb, path)
        html = args.out / f"{path.stem}.html"
        html.write_text(to_html(nb), encoding="utf-8")
        print(f"ran {path.name}: {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
