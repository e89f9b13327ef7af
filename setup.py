"""Package list for setuptools: everything under services/, plus schemas/ as auditstream.schemas.

All other metadata is in pyproject.toml. ``schemas/`` stays at the top of the repository
as the language-neutral contract; ``package-dir`` in pyproject.toml maps it into the
package, and this list names it, which ``[tool.setuptools.packages.find]`` cannot do.
Folders of data files (migrations, templates, static assets) are listed as namespace
packages: that is how setuptools wants package data in sub-folders declared.
"""

from setuptools import find_namespace_packages, setup

_SKIP = ["*.__pycache__", "*.egg-info"]

setup(
    packages=[
        *find_namespace_packages("services", include=["auditstream*"], exclude=_SKIP),
        "auditstream.schemas",
        *(f"auditstream.schemas.{p}" for p in find_namespace_packages("schemas", exclude=_SKIP)),
    ]
)
