"""tests/ mirrors the package: unit tests per subpackage (tests/unit/<package>/, the top-level
modules' in tests/unit/), the commands' in tests/cli/, end-to-end and packaging ones in
tests/integration/, shared builders in tests/helpers/. A test file anywhere else, or a subpackage
without its unit-test folder, fails here."""

from __future__ import annotations

import pathlib

import fp8doctor

PACKAGE = pathlib.Path(fp8doctor.__file__).parent
TESTS = pathlib.Path(__file__).resolve().parent.parent
HOMES = ("unit", "cli", "integration", "helpers")


def test_every_subpackage_has_its_unit_test_folder():
    subpackages = {p.parent.relative_to(PACKAGE).parts[0] for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages, "no subpackage found"
    missing = [name for name in sorted(subpackages - {"cli"})
               if not any((TESTS / "unit" / name).glob("test_*.py"))]
    assert not missing, f"subpackages without tests/unit/<name>/test_*.py: {missing}"
    assert any((TESTS / "cli").glob("test_*.py"))


def test_test_files_live_in_the_mirror():
    stray = [str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py")
             if p.relative_to(TESTS).parts[0] not in HOMES]
    assert not stray, f"test files outside {HOMES}: {stray}"
    unit = TESTS / "unit"
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    odd = [str(p.relative_to(TESTS)) for p in unit.rglob("test_*.py")
           if p.parent != unit and p.relative_to(unit).parts[0] not in subpackages]
    assert not odd, f"tests/unit/ folders that name no subpackage: {odd}"
    assert not list((TESTS / "helpers").glob("test_*.py")), "helpers hold no tests"
