"""The audit package's shape: every attack file belongs to a case, parses, and lives with its area.

No Docker needed: these read the package, they do not run the attacks.
"""

from __future__ import annotations

import ast
from importlib import resources

from rlm_sandbox.audit import AREAS, CASES, CATEGORIES, AuditEnv, sources
from rlm_sandbox.audit.checks import MARKER

ATTACKS = resources.files("rlm_sandbox.audit").joinpath("attacks")


def test_every_attack_file_is_one_cases_code():
    files = {entry.name[:-3] for entry in ATTACKS.iterdir() if entry.name.endswith(".py")}
    used = [case.attack for case in CASES]
    assert len(used) == len(set(used)), "two cases share an attack file"
    assert {name for name in files if not name.startswith("_")} == set(used)
    helpers = {stem for case in CASES for stem in case.preamble} | {"_prelude", "_inside_probe"}
    assert {name for name in files if name.startswith("_")} == helpers


def test_every_case_is_valid_python_after_the_prelude():
    with AuditEnv("runc") as env:
        prelude = env.prelude()
    assert MARKER in sources.source("_prelude")
    for case in CASES:
        ast.parse(prelude + case.code, filename=f"attacks/{case.attack}.py")


def test_each_case_is_registered_by_the_module_of_its_area():
    assert {case.area for case in CASES} == set(AREAS)
    assert {case.category for case in CASES} == set(CATEGORIES)
    for case in CASES:
        assert case.check.__module__ == f"rlm_sandbox.audit.{case.area}", case.name
