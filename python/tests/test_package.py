"""The package as installed: typed, importable, from the wheel when the script says so."""

from __future__ import annotations

import os
from pathlib import Path

import liftoff


def test_installed_from_the_wheel() -> None:
    here = Path(liftoff.__file__).parent
    assert (here / "py.typed").is_file()
    if os.environ.get("LIFTOFF_PY_EXPECT_INSTALLED"):
        # scripts/test-python.sh installs the wheel: the tests must use it, not python/src
        assert "site-packages" in here.parts, here
    assert callable(liftoff.launch) and liftoff.__version__
