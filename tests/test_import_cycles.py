"""scripts/check-import-cycles: rlm_sandbox/ has no import cycle, and the checker finds one when there is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check-import-cycles"


def check(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_package_has_no_import_cycle():
    done = check()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no import cycles" in done.stdout


def test_a_cycle_through_a_function_level_import_fails(tmp_path):
    write(
        tmp_path,
        {
            "p/__init__.py": "",
            "p/a.py": "from .b import x\n",
            "p/b.py": "x = 1\ndef later():\n    from . import a\n",
            "p/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import y\n",
            "p/d.py": "from .c import TYPE_CHECKING\ny = 2\n",
        },
    )
    done = check("p", cwd=tmp_path)
    assert done.returncode == 1
    assert "CYCLE among 2 modules: p.a, p.b" in done.stdout
    assert "p.b -> p.a  [p/b.py:3] (inside a function)" in done.stdout
    # The loop c -> d -> c exists only through TYPE_CHECKING: noted, never a failure.
    assert "note: a loop closed only by TYPE_CHECKING imports: p.c, p.d" in done.stdout
    assert "p.c, p.d" not in done.stdout.split("CYCLE", 1)[1]


def test_an_import_of_no_module_fails(tmp_path):
    write(tmp_path, {"p/__init__.py": "", "p/a.py": "def f():\n    from .gone import x\n"})
    done = check("p", cwd=tmp_path)
    assert done.returncode == 1
    assert "UNRESOLVED: p.a imports p.gone" in done.stdout
