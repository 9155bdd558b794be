"""A real ``pip install -e '.[test]'`` of a sample project from a private index on 127.0.0.1.

The wheels are built here (the project's one dependency, acp-demo-helper, exists nowhere
else) or repacked from what is installed (pytest and its needs, setuptools and wheel for
pip's isolated build); a fresh venv then installs from that index alone, and the sample's
own tests pass in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.support import package_index
from tests.support.package_index import PackageIndex, build_wheel, normalize

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "pyproject_sample"
SYSTEM_PYTHON = Path("/usr/bin/python3")
HELPER_SOURCE = '''"""A helper only the test's index has."""


def double(x):
    return 2 * x
'''


def _clean_env(home: Path) -> dict[str, str]:
    """The environment without proxies, pip settings or this venv; pip reads no config."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(PIP_CONFIG_FILE=os.devnull, HOME=str(home), PIP_NO_INPUT="1")
    return env


def test_wheel_and_index_basics(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path, "Demo.Thing", "1.2", {"demo_thing": "X = 1\n"}, requires=["pytest>=8"]
    )
    assert wheel.name == "demo_thing-1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read("demo_thing-1.2.dist-info/RECORD").decode()
        metadata = archive.read("demo_thing-1.2.dist-info/METADATA").decode()
    assert "demo_thing.py" in names
    assert "Requires-Dist: pytest>=8" in metadata
    assert "demo_thing-1.2.dist-info/RECORD,," in record
    assert normalize("Demo_Thing.x") == "demo-thing-x"

    with PackageIndex([wheel]) as index:
        page = urllib.request.urlopen(index.url + "demo-thing/").read().decode()
        assert "/files/demo_thing-1.2-py3-none-any.whl#sha256=" in page
        assert "demo-thing" in urllib.request.urlopen(index.url).read().decode()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(index.url + "nothing-here/")
        assert missing.value.code == 404
        assert index.requests == ["/simple/demo-thing/", "/simple/", "/simple/nothing-here/"]


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="needs /usr/bin/python3 with venv")
def test_pip_installs_the_sample_from_the_private_index(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    helper = build_wheel(
        wheels, "acp-demo-helper", "1.0.0", {"acp_demo_helper/__init__.py": HELPER_SOURCE}
    )
    toolchain = package_index.test_toolchain_wheels(wheels)
    project = tmp_path / "tallyho"
    shutil.copytree(SAMPLE, project)
    venv = tmp_path / "venv"
    env = _clean_env(tmp_path)

    with PackageIndex([helper, *toolchain]) as index, PackageIndex(toolchain) as unused:
        started = time.monotonic()
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", venv], check=True, env=env, timeout=120)
        made_venv = time.monotonic()
        install = subprocess.run(
            [
                venv / "bin" / "pip",
                "install",
                "--disable-pip-version-check",
                "--no-cache-dir",
                "--index-url",
                index.url,
                "-e",
                f"{project}[test]",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        installed = time.monotonic()
        assert install.returncode == 0, install.stdout + install.stderr
        tests = subprocess.run(
            [venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        print(
            f"venv {made_venv - started:.1f}s, pip install {installed - made_venv:.1f}s, "
            f"pytest {time.monotonic() - installed:.1f}s"
        )
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert "5 passed" in tests.stdout
        assert (venv / "bin" / "pytest").exists()  # the console script, from entry_points.txt

        asked = index.requested_projects()
        assert {"acp-demo-helper", "pytest", "setuptools"} <= asked
        assert any(p.startswith("/files/acp_demo_helper-1.0.0") for p in index.requests)
        assert unused.requests == []


def test_a_compiled_distribution_is_refused(tmp_path: Path) -> None:
    # pydantic-core (installed with pydantic) comes as a platform wheel with a .so in it.
    with pytest.raises(package_index.NotPureError, match="platform wheel"):
        package_index.wheel_from_installed(tmp_path, "pydantic-core")
    assert list(tmp_path.iterdir()) == []
