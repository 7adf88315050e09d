"""The lint step's import contracts (.importlinter) catch what they promise to catch.

Each test copies the four packages and the contracts into a temporary directory and runs the
venv's `lint-imports` there, so that a deliberately broken copy never touches the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("identity", "audit", "scim", "saml")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
DOMAIN_CONTRACT = "domain-free-of-web"
DOMAIN_CONTRACT_NAME = "The domain (identity minus identity.web and identity.migrations) imports no"


def copy_of_repo(folder: Path) -> Path:
    """Copy the packages and the contracts into `folder`; return it."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", folder / ".importlinter")
    return folder


def lint_imports(folder: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """Run lint-imports in `folder` with the repo's contracts (only `contracts`, when named)."""
    selected = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run([str(LINT_IMPORTS), "--no-logo", "--no-cache", *selected], cwd=folder,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_domain_module_importing_flask_breaks_the_domain_contract(tmp_path: Path) -> None:
    folder = copy_of_repo(tmp_path)
    before = lint_imports(folder, DOMAIN_CONTRACT)
    assert "identity.seats -> flask" not in before.stdout, before.stdout + before.stderr

    seats = folder / "identity" / "seats.py"
    seats.write_text(seats.read_text() + "\nimport flask  # noqa: E402,F401  (the break under test)\n")
    after = lint_imports(folder, DOMAIN_CONTRACT)

    assert after.returncode != 0, after.stdout + after.stderr
    assert f"{DOMAIN_CONTRACT_NAME}" in after.stdout
    assert "BROKEN" in after.stdout
    assert "identity.seats -> flask" in after.stdout, after.stdout + after.stderr


def test_the_unmodified_packages_keep_every_contract(tmp_path: Path) -> None:
    result = lint_imports(copy_of_repo(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
