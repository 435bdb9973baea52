"""Setuptools build hook: compile the message catalogues (``.po`` → ``.mo``) before the
package files are collected, so a wheel — and an editable install — carries them
(``[tool.setuptools] cmdclass`` in pyproject.toml; ``.mo`` files are not committed)."""

from __future__ import annotations

from setuptools.command.build_py import build_py


class BuildPy(build_py):  # type: ignore[misc]
    def run(self) -> None:
        from mailplane.i18n.catalogue import compile_all

        compile_all()
        self.__dict__.pop("data_files", None)  # collect package data again, .mo included
        super().run()
