"""sr-data: checksum-verified download and unpack, all-or-nothing. Never touches the real network:
archives are built here and served from file:// URLs or given with --zip."""
from __future__ import annotations

import hashlib
import zipfile

import pytest

from srdeploy.data_cli import ARCHIVES, Archive, fetch
from srdeploy.errors import SrDeployError

from .conftest import run_cli


def _zip(path, folder="DIV2K_valid_HR", n=3, extra=()):
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            zf.writestr(f"{folder}/{i + 1:04d}.png", b"\x89PNG fake %d" % i)
        for name in extra:
            zf.writestr(name, b"x")
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def _archive(zp, n=3, **kw):
    size, digest = _zip(zp, n=n)
    return Archive(**{"url": zp.as_uri(), "size": size, "sha256": digest, "folder": "DIV2K_valid_HR",
                      "images": n, **kw})


def test_download_verifies_and_unpacks_without_the_network(tmp_path, no_network):
    arc = _archive(tmp_path / "src.zip")
    res = fetch(arc, tmp_path / "out")
    assert res["status"] == "downloaded" and res["sha256"] == arc.sha256
    assert sorted(p.name for p in (tmp_path / "out" / "DIV2K_valid_HR").iterdir()) == ["0001.png", "0002.png",
                                                                                       "0003.png"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["DIV2K_valid_HR"]  # no temporary left
    assert fetch(arc, tmp_path / "out")["status"] == "already present"


@pytest.mark.parametrize("bad", ["sha256", "size", "count"])
def test_a_wrong_archive_leaves_nothing(tmp_path, bad):
    arc = _archive(tmp_path / "src.zip")
    wrong = {"sha256": {"sha256": "0" * 64}, "size": {"size": arc.size + 1}, "count": {"images": 4}}[bad]
    arc = Archive(**{**arc.__dict__, **wrong})
    with pytest.raises(SrDeployError, match="checksum mismatch" if bad != "count" else "expected 4"):
        fetch(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "keep").mkdir()  # an existing output folder is kept, and stays clean
    with pytest.raises(SrDeployError):
        fetch(arc, tmp_path / "keep")
    assert list((tmp_path / "keep").iterdir()) == []


def test_unsafe_member_names_are_refused(tmp_path):
    zp = tmp_path / "evil.zip"
    size, digest = _zip(zp, extra=["../escape.png"])
    with pytest.raises(SrDeployError, match="unsafe path"):
        fetch(Archive(zp.as_uri(), size, digest, "DIV2K_valid_HR", 3), tmp_path / "out")
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "out").exists()


def test_unreachable_address_is_one_clear_error(tmp_path):
    arc = Archive((tmp_path / "missing.zip").as_uri(), 1, "0" * 64, "DIV2K_valid_HR", 1)
    with pytest.raises(SrDeployError, match="cannot download"):
        fetch(arc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_zip_mismatch_and_bad_arguments_one_line_exit_2(tmp_path):
    zp = tmp_path / "DIV2K_valid_HR.zip"
    _zip(zp)  # right layout, but not the published archive: its checksum cannot match
    for args in (["div2k", "--zip", str(zp), "--out", str(tmp_path / "o1")],
                 ["div2k", "--zip", str(tmp_path / "nope.zip"), "--out", str(tmp_path / "o2")],
                 ["div2k", "--split", "test", "--out", str(tmp_path / "o3")],
                 ["imagenet", "--out", str(tmp_path / "o4")]):
        proc = run_cli("srdeploy.data_cli", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert not (tmp_path / args[-1]).exists()
    assert "checksum" in run_cli("srdeploy.data_cli", "div2k", "--zip", str(zp), "--out", str(tmp_path / "o")).stderr


def test_published_checksums_are_well_formed():
    for (name, split), arc in ARCHIVES.items():
        assert arc.url.startswith("https://data.vision.ee.ethz.ch/cvl/DIV2K/") and arc.url.endswith(".zip")
        assert len(arc.sha256) == 64 and int(arc.sha256, 16) >= 0 and arc.size > 10**8
        assert arc.images == {"valid": 100, "train": 800}[split]
