"""``sr-data``: download a training/calibration dataset from its official address, verified.

The only part of srdeploy that reaches the network, and only when a user runs it. The archive is
streamed to a temporary file beside the output (progress bar), its byte size and SHA-256 are
checked against the published figures, and it is unpacked into a temporary folder that is
renamed into place only when every expected image is there: an interrupted or corrupt download
leaves nothing under the final name.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from .cli_util import OneLineParser, run_cli
from .errors import SrDeployError

__all__ = ["Archive", "ARCHIVES", "fetch", "main", "entry"]


@dataclass(frozen=True)
class Archive:
    url: str
    size: int  # bytes
    sha256: str
    folder: str  # the folder the zip unpacks to
    images: int  # PNG files expected inside it


# Sizes and SHA-256 as published in TensorFlow Datasets' url_checksums/div2k.txt for the DIV2K
# site's files (Agustsson & Timofte, NTIRE 2017). DIV2K is for academic research use.
_DIV2K = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
ARCHIVES: dict[tuple[str, str], Archive] = {
    ("div2k", "valid"): Archive(_DIV2K + "DIV2K_valid_HR.zip", 448_993_893,
                                "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
                                "DIV2K_valid_HR", 100),
    ("div2k", "train"): Archive(_DIV2K + "DIV2K_train_HR.zip", 3_530_603_713,
                                "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
                                "DIV2K_train_HR", 800),
}

EPILOG = """\
examples:
  sr-data div2k --out data                      # DIV2K validation HR (100 images, 449 MB)
  sr-data div2k --split train --out data        # DIV2K training HR (800 images, 3.5 GB)
  sr-data div2k --zip ~/Downloads/DIV2K_valid_HR.zip --out data   # verify and unpack a copy you have

then: sr-export --model imdn_rtc --int8 --calib data/DIV2K_valid_HR
      sr-train --data data/DIV2K_train_HR
exit codes: 0 ok (or already present), 2 bad input, failed download or checksum mismatch.
"""


def _png_count(folder: Path) -> int:
    return len(list(folder.glob("*.png"))) if folder.is_dir() else 0


def _copy_hashing(src, dst, total: int, progress: bool, desc: str) -> tuple[int, str]:
    from tqdm import tqdm

    h, n = hashlib.sha256(), 0
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress) as bar:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
            h.update(chunk)
            n += len(chunk)
            bar.update(len(chunk))
    return n, h.hexdigest()


def _download(archive: Archive, tmp: Path, progress: bool) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(archive.url, timeout=60) as resp, open(tmp, "wb") as f:
            return _copy_hashing(resp, f, archive.size, progress, PurePosixPath(archive.url).name)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise SrDeployError(f"cannot download {archive.url}: {reason}") from None


def _unpack(zip_path: Path, archive: Archive, out: Path) -> Path:
    """Unpack into a temporary folder in *out*; rename the image folder into place when complete."""
    work = Path(tempfile.mkdtemp(prefix=f".{archive.folder}.", suffix=".partial", dir=out))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                for name in zf.namelist():  # never write outside the folder (absolute or ../ names)
                    p = PurePosixPath(name)
                    if p.is_absolute() or ".." in p.parts:
                        raise SrDeployError(f"{zip_path} holds an unsafe path {name!r}")
                zf.extractall(work)
        except zipfile.BadZipFile as exc:
            raise SrDeployError(f"{zip_path} is not a readable zip: {exc}") from None
        src = work / archive.folder
        found = _png_count(src)
        if found != archive.images:
            raise SrDeployError(f"{zip_path} unpacked {found} PNG images in {archive.folder}/, "
                                f"expected {archive.images}")
        dest = out / archive.folder
        src.rename(dest)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fetch(archive: Archive, out: Path, zip_file: Path | None = None, keep_zip: bool = False,
          progress: bool = False) -> dict:
    """Download (or take *zip_file*), verify size and SHA-256, unpack into ``out/<folder>``."""
    from .fsutil import ensure_writable_dir

    dest = out / archive.folder
    if _png_count(dest) == archive.images:
        return {"folder": str(dest), "images": archive.images, "status": "already present"}
    if dest.exists():
        raise SrDeployError(f"{dest} exists but is not a complete {archive.folder} "
                            f"({archive.images} images): remove it first")
    if zip_file is not None and not zip_file.is_file():
        raise SrDeployError(f"--zip file not found: {zip_file}")
    created = ensure_writable_dir(out)
    tmp = Path(tempfile.mkstemp(prefix=f".{PurePosixPath(archive.url).name}.", suffix=".partial", dir=out)[1])
    done = False
    try:
        if zip_file is None:
            size, digest = _download(archive, tmp, progress)
            source = archive.url
        else:
            with open(zip_file, "rb") as src, open(tmp, "wb") as f:
                size, digest = _copy_hashing(src, f, zip_file.stat().st_size, progress, zip_file.name)
            source = str(zip_file)
        if size != archive.size or digest != archive.sha256:
            raise SrDeployError(f"{source}: checksum mismatch ({size} bytes, sha256 {digest[:16]}...; "
                                f"expected {archive.size} bytes, sha256 {archive.sha256[:16]}...)")
        folder = _unpack(tmp, archive, out)
        if keep_zip and zip_file is None:
            tmp.rename(out / PurePosixPath(archive.url).name)
        done = True
        return {"folder": str(folder), "images": archive.images,
                "status": "downloaded" if zip_file is None else "unpacked", "source": source,
                "bytes": size, "sha256": digest}
    finally:
        tmp.unlink(missing_ok=True)
        if created is not None and not done:  # folders this call made, for a fetch that failed: leave nothing
            shutil.rmtree(created, ignore_errors=True)


def build_parser() -> OneLineParser:
    import argparse

    p = OneLineParser(prog="sr-data", description=(
        "Download a dataset from its official address with a progress bar, check its size and SHA-256 "
        "against the published figures, and unpack it (written under a temporary name, renamed when "
        "complete). The only srdeploy command that uses the network."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=sorted({k[0] for k in ARCHIVES}), help="dataset to fetch")
    p.add_argument("--split", choices=("valid", "train"), default="valid",
                   help="valid: 100 HR images (calibration, 449 MB); train: 800 HR images (training, 3.5 GB)")
    p.add_argument("--out", required=True, help="folder to unpack into (the images land in OUT/<archive folder>)")
    p.add_argument("--zip", default=None, metavar="FILE",
                   help="verify and unpack an archive you already downloaded instead of downloading")
    p.add_argument("--keep-zip", action="store_true", help="keep the downloaded archive beside the images")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    archive = ARCHIVES[(args.dataset, args.split)]
    res = fetch(archive, Path(args.out), Path(args.zip) if args.zip else None, args.keep_zip,
                progress=not args.no_progress and sys.stderr.isatty())
    if args.json:
        print(json.dumps({**res, "archive": asdict(archive)}, indent=2))
    else:
        print(f"{args.dataset} {args.split}: {res['status']}, {res['images']} images in {res['folder']}")
    return 0


def entry() -> None:
    sys.exit(run_cli("sr-data", main))


if __name__ == "__main__":
    entry()
