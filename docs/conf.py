"""Sphinx configuration of the skbnn documentation.

Build with::

    sphinx-build -W -b html docs docs/_build/html
"""

import skbnn

# -- Project ---------------------------------------------------------------
project = "skbnn"
author = "skbnn developers"
copyright = "skbnn developers"
version = skbnn.__version__
release = skbnn.__version__

# -- General -----------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",   # MathJax copied into _static: formulas render offline
    "numpydoc",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
language = "en"

# autosummary writes one page per public object into docs/generated/ (git-ignored)
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"
autodoc_member_order = "groupwise"

# numpydoc renders Parameters/Attributes itself; members are listed by the
# autosummary class template (docs/_templates/autosummary/class.rst)
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False

# -- HTML --------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"skbnn {release}"
html_static_path = []
html_theme_options = {
    "description": "Binary neural networks for scikit-learn",
    "fixed_sidebar": True,
}
