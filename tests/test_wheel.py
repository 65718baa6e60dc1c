"""The embedded default weights ship in the wheel and work offline from outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from this checkout."""
    pytest.importorskip("setuptools")
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(dist)], check=True, cwd=dist)
    return next(dist.glob("lia_upscale-*.whl"))


def test_wheel_carries_licence_notice_types_and_cards(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    info = wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"
    assert f"{info}/licenses/LICENSE" in names
    assert "lia_upscale/weights/NOTICE" in names  # the weights' training-data terms
    assert "lia_upscale/py.typed" in names
    assert "lia_upscale/models/cards.json" in names
    for scale in (2, 4):
        assert f"lia_upscale/weights/lia-u-x{scale}.safetensors" in names
    from lia_upscale.models import ALL_CARDS

    # the clean endpoints of the denoise strength ship beside the photo models
    ends = {c.clean_endpoint for c in ALL_CARDS if c.clean_endpoint}
    assert ends == {"plainusr-l-x4.safetensors", "plainusr-m-x2.safetensors"}
    assert {f"lia_upscale/weights/{e}" for e in ends} <= names
    # discovered, not listed by hand: every package folder of the source tree is in the wheel
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "lia_upscale").rglob("__init__.py")}
    assert packages <= {n.rsplit("/", 1)[0] for n in names}
    import lia_upscale

    assert wheel.name.split("-")[1] == lia_upscale.__version__


@pytest.mark.slow
def test_wheel_upscales_offline(wheel: Path, tmp_path: Path) -> None:
    # a fresh environment that borrows torch & co. from this one through a .pth file (so
    # nothing is downloaded), gets only the wheel installed, and runs outside the source tree
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    here = Path(subprocess.run([sys.executable, "-c", "import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "borrow.pth").write_text(f"{here}\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(work / "some.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIA_", "PYTHONPATH"))}
    code = (f"import sys, lia_upscale.cli as c; assert c.__file__.startswith({str(site)!r}), c.__file__;"
            "sys.argv=['lia-upscale','some.png','out/','--scale','4']; c.main()")
    run = subprocess.run([str(py), "-I", "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert Image.open(work / "out" / "some.png").size == (40, 48)

