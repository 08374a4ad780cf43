"""configs/ is found from the source checkout and ships inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from mlft.config import config_dir

from conftest import ROOT


def test_configs_found_from_the_source_checkout():
    assert config_dir() == ROOT / "configs"
    assert (config_dir() / "config.yaml").is_file()


@pytest.mark.slow
def test_wheel_carries_every_config(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("mlft-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"mlft/configs/{p.relative_to(ROOT / 'configs')}" for p in (ROOT / "configs").rglob("*.yaml")}
    assert shipped <= names
    assert "mlft/cli.py" in names and "mlft/__main__.py" in names
    assert "hydra_plugins/mlft_search/search_sweeper.py" in names  # the search sweeper Hydra loads
