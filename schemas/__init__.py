"""The event contract and the ClickHouse migrations, as data files.

This folder is the language-neutral source of truth (producers in any language read
``event/v1.json``). The file only makes it importable as ``auditstream.schemas``
(``package-dir`` in pyproject.toml), so that the wheel carries these files and
``auditstream.resources`` reads them with importlib.resources.
"""
