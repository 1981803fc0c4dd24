"""benchmarks/int8_candidate_eval.py: the candidate clone differs from HEAD by the INT8 file and its sha256 in the
registry, nothing else; bad input gets one line and exit 2 before anything is cloned or exported."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from srdeploy.errors import SrDeployError
from srdeploy.fsutil import sha256_file

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "int8_candidate_eval.py"
_spec = importlib.util.spec_from_file_location("int8_candidate_eval", _PATH)
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)


def test_the_candidate_clone_changes_only_the_file_and_its_sha256(tmp_path):
    from srdeploy.models.registry import get_spec

    shipped = get_spec("imdn_rtc").int8_params[2]
    candidate = tmp_path / "cand.npz"
    candidate.write_bytes(b"not the shipped file")
    tree = tool._clone(tmp_path / "clone", candidate, shipped.file, shipped.sha256)
    status = subprocess.run(["git", "-C", str(tree), "status", "--porcelain"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    assert sorted(ln[3:] for ln in status if ln) == ["src/srdeploy/models/registry.py",
                                                      f"src/srdeploy/models/zoo/{shipped.file}"]
    diff = subprocess.run(["git", "-C", str(tree), "diff", "-U0", "src/srdeploy/models/registry.py"],
                          capture_output=True, text=True, check=True).stdout
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert len(changed) == 2 and shipped.sha256 in changed[0] and sha256_file(candidate) in changed[1]
    assert (tree / "src/srdeploy/models/zoo" / shipped.file).read_bytes() == b"not the shipped file"
    with pytest.raises(SrDeployError) as exc:  # a registry that does not name the shipped sha256: refused
        tool._clone(tmp_path / "clone2", candidate, shipped.file, "0" * 64)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("args, message", [
    (["--model", "nosuchmodel", "--candidate", "C", "--size", "64x64"], "unknown model"),
    (["--model", "imdn_rtc", "--candidate", "MISSING", "--size", "64x64"], "is not a file"),
    (["--model", "imdn_as", "--candidate", "C", "--size", "64x64"], "ships no INT8 file"),
    (["--model", "imdn_rtc", "--candidate", "C", "--size", "64x64:everyone"], "WHO must be both"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    cand = tmp_path / "c.npz"
    cand.write_bytes(b"x")
    args = [str(cand) if a == "C" else str(tmp_path / "missing.npz") if a == "MISSING" else a for a in args]
    proc = subprocess.run([sys.executable, str(_PATH), *args, "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()
