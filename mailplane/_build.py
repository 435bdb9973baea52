"""Setuptools build hook: compile the message catalogues (``.po`` → ``.mo``) before the
package files are collected, so a wheel — and an editable install — carries them
(``[tool.setuptools] cmdclass`` in pyproject.toml; ``.mo`` files are not committed)."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools.command.build_py import build_py

#: The source tree: setuptools loads this file by path, so the package is not importable
#: until its parent directory is on sys.path.
SOURCE_ROOT = Path(__file__).resolve().parent.parent


class BuildPy(build_py):  # type: ignore[misc]
    def run(self) -> None:
        if str(SOURCE_ROOT) not in sys.path:
            sys.path.insert(0, str(SOURCE_ROOT))
        from mailplane.i18n.catalogue import compile_all

        compile_all()
        self.__dict__.pop("data_files", None)  # collect package data again, .mo included
        super().run()
