"""The READMEs' Python examples, run as written, from the repository's root,
against a live server and agent serving the queue they name (`cpu`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from conftest import Env

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(readme: Path) -> List[str]:
    return re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)


def run_example(code: str, env: Env) -> str:
    environ = {k: v for k, v in __import__("os").environ.items() if not k.startswith("LIFTOFF_")}
    environ.update(LIFTOFF_BASE_URL=env.server.base_url, LIFTOFF_API_KEY=env.server.api_key)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"the example failed:\n{code}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("readme", ["README.md", "python/README.md"])
def test_the_readmes_launch_example_runs_as_written(env: Env, readme: str) -> None:
    blocks = [b for b in python_blocks(ROOT / readme) if "liftoff.launch(" in b and 'queue="cpu"' in b]
    assert blocks, f"{readme} shows a liftoff.launch example on queue cpu"
    out = run_example(blocks[0], env)
    assert "count 5" in out, out
    assert "finished" in out, out
