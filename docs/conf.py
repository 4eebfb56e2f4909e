"""Sphinx configuration of the skimpact documentation (``make docs``)."""

import os
import re
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import skimpact  # noqa: E402

project = "skimpact"
author = "skimpact developers"
copyright = "skimpact developers"
version = release = skimpact.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "auto_examples/*.json"]
root_doc = "index"

autosummary_generate = True
autodoc_typehints = "none"
autodoc_default_options = {"member-order": "bysource"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()



# Every example runs while the docs build (small step counts keep the whole build at about
# two minutes on two cores); its printed output and figures appear on its page.
os.environ.setdefault("MPLBACKEND", "Agg")
# The collections and Thornton examples read ../shared/data (beside the repository in CI);
# without it they are left out of the gallery, as their tests are skipped.
_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_NEEDS_DATA = {"collections_email": "collections_email.csv", "thornton_hiv": "thornton_hiv.csv"}
_ABSENT = [name for name, csv in _NEEDS_DATA.items() if not (_SHARED_DATA / csv).is_file()]
_IGNORE = "|".join([r"__init__\.py"] + [rf"{name}\.py" for name in _ABSENT])
if _ABSENT:
    print(f"docs: examples {', '.join(_ABSENT)} are left out ({_SHARED_DATA} lacks their data)")
sphinx_gallery_conf = {
    "ignore_pattern": _IGNORE,
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"\.py$",
    "plot_gallery": "True",
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skimpact {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path = []

# scikit-learn's metadata-routing methods are generated on every estimator class; their
# docstrings refer to scikit-learn's own glossary, so they are left to scikit-learn's docs.
_SKLEARN_GENERATED = re.compile(r"^(set_\w+_request|get_metadata_routing)$")


def _skip_member(app, what, name, obj, skip, options):
    return True if _SKLEARN_GENERATED.match(name) else skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
