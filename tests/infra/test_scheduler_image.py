"""The Scheduler's image (samples/scheduler_mcp/Dockerfile): Docker is not available here, so the
files its COPY lines take are laid out as the image has them and the Scheduler is started from
them alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.infra.bicep import ROOT
from tests.infra.imports import third_party_imports, unpinned

DOCKERFILE = ROOT / "samples" / "scheduler_mcp" / "Dockerfile"


def image_files(destination: Path) -> None:
    """Each `COPY src... dest` into `destination` (as WORKDIR /app)."""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("COPY "):
            continue
        *sources, target = line.split()[1:]
        target_path = destination / target.removeprefix("/app/")
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target_path, dirs_exist_ok=True)
            elif target.endswith("/"):
                target_path.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target_path / path.name)
            else:
                target_path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target_path)


def test_the_images_files_are_enough_to_start_the_scheduler_from_its_command(tmp_path: Path):
    app = tmp_path / "app"
    image_files(app)
    # The image's CMD with --help: imports everything the server needs, then exits.
    done = subprocess.run(
        [sys.executable, "-m", "samples.scheduler_mcp", "--help"],
        cwd=app,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imports = "import samples.scheduler_mcp.server, samples.scheduler_mcp.__main__"
    done = subprocess.run(
        [sys.executable, "-c", imports], cwd=app, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (app / "tests").exists() and not (app / "local_host").exists()


def test_the_image_installs_pinned_packages_and_runs_as_a_non_root_user():
    text = DOCKERFILE.read_text(encoding="utf-8")
    requirements = (ROOT / "samples" / "scheduler_mcp" / "requirements.txt").read_text()
    packages = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    assert packages and all("==" in line for line in packages)
    assert "\nUSER " in text and "USER root" not in text
    assert "--api-key" not in text and "--webhook-secret" not in text


def test_the_dockerignore_lets_every_copied_file_into_the_build_context():
    ignore = DOCKERFILE.with_name("Dockerfile.dockerignore").read_text(encoding="utf-8")
    allowed = [line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")]
    assert "*" in ignore.splitlines()  # everything else stays out of the context
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                source = source.rstrip("/")
                assert any(source == a or source.startswith(a + "/") for a in allowed), source


def test_every_package_the_images_code_imports_is_pinned_in_its_requirements(tmp_path: Path):
    app = tmp_path / "app"
    image_files(app)
    modules = third_party_imports(app, {"agent", "storage", "samples"})
    requirements = ROOT / "samples" / "scheduler_mcp" / "requirements.txt"
    assert unpinned(modules, requirements) == []
