"""Build the ViT Facemap paper: execute the notebooks, render the book, check the exports.

- :mod:`vit_facemap.book.execute` re-runs every ``notebooks/NN_*.ipynb`` with papermill and
  records profile, device and wall time per notebook.
- :mod:`vit_facemap.book.mystbuild` runs ``myst build`` and fails on unresolved
  references, citations or missing exports (MyST itself often exits 0 then).
- :mod:`vit_facemap.book.render` turns MyST's page ASTs into a static, offline HTML book.
- :mod:`vit_facemap.book.latex` compiles the arXiv zip with plain ``latexmk -pdf`` and ships
  the ``.bbl`` inside it.
- :mod:`vit_facemap.book.check` verifies that every promised file exists and is whole.

Run ``python -m vit_facemap.book --help`` for the steps.
"""
