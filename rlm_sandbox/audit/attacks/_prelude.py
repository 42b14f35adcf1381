# Runs before every attack, after `_audit` is set to what the host tells the code: the
# canaries' names, paths and ports, never a secret value. `_report(obs)` prints the one
# `AUDIT {json}` line of observations that the case's check reads.
import json as _audit_json
import sys as _audit_sys


def _report(obs):
    _audit_sys.stdout.write("AUDIT " + _audit_json.dumps(obs, default=str) + "\n")
    _audit_sys.stdout.flush()
