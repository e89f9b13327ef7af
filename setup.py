"""Package list for setuptools: everything under services/, plus schemas/ as auditstream.schemas.

All other metadata is in pyproject.toml. ``schemas/`` stays at the top of the repository
as the language-neutral contract; ``package-dir`` in pyproject.toml maps it into the
package, and this list names it, which ``[tool.setuptools.packages.find]`` cannot do.
Folders of data files (migrations, templates, static assets) are listed as namespace
packages: that is how setuptools wants package data in sub-folders declared.

The one compiled module, ``auditstream.events._fastpath_native`` (native/fastpath, Rust
with PyO3), is built by setuptools-rust when a Rust toolchain is on the PATH. It is
optional: without cargo the package installs without it and the processor decodes with
msgspec instead (events/fastpath.py), so an image or a machine without Rust still works.
"""

from setuptools import find_namespace_packages, setup
from setuptools_rust import Binding, RustExtension

_SKIP = ["*.__pycache__", "*.egg-info"]

setup(
    packages=[
        *find_namespace_packages("services", include=["auditstream*"], exclude=_SKIP),
        "auditstream.schemas",
        *(f"auditstream.schemas.{p}" for p in find_namespace_packages("schemas", exclude=_SKIP)),
    ],
    rust_extensions=[
        RustExtension(
            "auditstream.events._fastpath_native",
            path="native/fastpath/Cargo.toml",
            binding=Binding.PyO3,
            optional=True,
            # Release code in editable installs too: the processor's speed depends on it.
            debug=False,
        )
    ],
)
