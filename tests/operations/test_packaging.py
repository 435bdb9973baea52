"""Issue 9: the package builds as a wheel (``python -m build``) and installs into a fresh
virtual environment with a working ``mailplane`` command — run from outside the checkout,
so nothing (migrations, notice templates, portal files) may come from the source tree.

Speed and robustness: the wheel is built for real (``python -m build --wheel``, isolated,
from a copy of the sources so the checkout gets no ``build/`` directory), then installed
with ``pip install --no-deps --no-index`` into a fresh venv whose dependencies are borrowed
from the project's own venv through a ``.pth`` line — no network, a few seconds.  ``pip
check`` then proves the wheel's declared dependencies are all satisfied.  Set
``MAILPLANE_TEST_FULL_INSTALL=1`` to let pip resolve and install every dependency instead
(about 25 s here, needs the package index).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("build", reason="the `build` package is not installed in the venv")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "mailplane", source / "mailplane",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (found,) = out.glob("mailplane-*.whl")
    return found


def test_the_wheel_ships_migrations_templates_portal_and_the_console_script(
    wheel: Path,
) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    expected_migrations = {
        f"mailplane/storage/migrations/versions/{p.name}"
        for p in (REPO / "mailplane/storage/migrations/versions").glob("*.py")
    }
    assert "mailplane/storage/migrations/env.py" in names
    assert expected_migrations <= names
    assert {f"mailplane/templates/{p.name}" for p in (REPO / "mailplane/templates").iterdir()
            } <= names
    assert "mailplane/templates/virus_report.txt" in names
    assert "mailplane/portal/static/index.html" in names
    assert "mailplane/py.typed" in names
    assert "mailplane = mailplane.cli:main" in entry_points
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def _fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin"


def test_the_wheel_installs_into_a_fresh_venv_with_a_working_mailplane_command(
    wheel: Path, tmp_path: Path,
) -> None:
    bin_dir = _fresh_venv(tmp_path / "venv")
    full = os.environ.get("MAILPLANE_TEST_FULL_INSTALL") == "1"
    if full:
        install = [str(bin_dir / "pip"), "install", "--quiet", str(wheel)]
    else:
        purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
        site = subprocess.run([str(bin_dir / "python"), "-c", purelib],
                              capture_output=True, text=True, check=True).stdout.strip()
        # The project venv's site-packages as a plain path: its own .pth files (the editable
        # install of the checkout) are not processed, so `mailplane` comes from the wheel.
        Path(site, "borrowed-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
        install = [str(bin_dir / "pip"), "install", "--quiet", "--no-deps", "--no-index",
                   str(wheel)]
    installed = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]

    work = tmp_path / "elsewhere"  # not the checkout: no config/, no mailplane/ on the path
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILPLANE_", "PYTHON"))}
    env.update({"MAILPLANE_STATE_DIR": str(work / "var"),
                "MAILPLANE_DATABASE_URL": f"sqlite:///{work / 'var' / 'mailplane.db'}"})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True,
                              timeout=120)

    where = run(str(bin_dir / "python"), "-c", "import mailplane; print(mailplane.__file__)")
    assert where.stdout.strip().startswith(str(tmp_path / "venv")), where
    assert run(str(bin_dir / "pip"), "check").returncode == 0
    mailplane = str(bin_dir / "mailplane")
    assert run(mailplane, "--help").returncode == 0
    migrated = run(mailplane, "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    config = run(mailplane, "check-config")
    assert config.returncode == 0, config.stderr
    templates = Path(json.loads(config.stdout)["templates_dir"])
    assert (templates / "virus_report.txt").is_file()
    assert str(templates).startswith(str(tmp_path / "venv"))
    key = run(mailplane, "create-api-key", "--role", "operator")
    assert key.returncode == 0 and key.stdout.strip(), key.stderr


def test_the_wheel_carries_the_compiled_japanese_catalogue(wheel: Path) -> None:
    """The .mo files are not committed: the build hook compiles them into the wheel."""
    import gettext
    import io

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "mailplane/locale/ja/LC_MESSAGES/mailplane.po" in names
        compiled = archive.read("mailplane/locale/ja/LC_MESSAGES/mailplane.mo")
    catalogue = gettext.GNUTranslations(io.BytesIO(compiled))
    assert catalogue.gettext("must be {min}-{max} characters") == (
        "{min}文字以上{max}文字以内で入力してください")
