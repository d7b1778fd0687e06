"""The deployment package, built as a zip deploy builds it (the project minus .funcignore): it
holds the app and what it imports, and no tests, tools, local state or secrets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.infra.bicep import ROOT
from tests.infra.imports import third_party_imports, unpinned
from tests.infra.test_templates import STORAGE_ACCOUNT, as_resolved_on_azure, function_app_settings
from tests.infra.zipdeploy import build_package, ignored, read_rules

MAX_PACKAGE_BYTES = 1_000_000  # about 0.2 MB today; .venv and node_modules would be ~450 MB
# Azurite's development account key: public, documented by Microsoft, used for local runs only.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
SECRET_SHAPES = {
    "storage account key": re.compile(
        r"AccountKey=(?!" + re.escape(AZURITE_KEY) + r")[A-Za-z0-9+/=]{40,}"
    ),
    "webhook secret": re.compile(r"whsec_[A-Za-z0-9+/=]{20,}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "OpenAI key": re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
    "SAS signature": re.compile(r"[?&]sig=[A-Za-z0-9%+/=]{20,}"),
}


def test_the_package_holds_the_app_and_the_packages_it_imports_and_nothing_else(tmp_path: Path):
    names = build_package(ROOT, tmp_path / "app.zip")
    assert {"function_app.py", "host.json", "requirements.txt"} <= set(names)
    assert any(name.startswith("agent/") for name in names)
    assert any(name.startswith("storage/") for name in names)
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"function_app.py", "host.json", "requirements.txt", "agent", "storage", "wire"}
    # the chat page's files are served from the package (agent/ui/page.py)
    assert {"agent/ui/index.html", "agent/ui/app.js", "agent/ui/app.css"} <= set(names)


def test_the_package_leaves_out_dev_tools_local_state_and_settings(tmp_path: Path):
    rules = read_rules(ROOT / ".funcignore")
    for folder in (".venv", ".venv-infra", "node_modules", "tests", "benchmarks", "local_host",
                   "offline_model", "devstack", "samples", "scripts", "conformance", "infra",
                   ".git", ".local",
                   ".azurite", ".azure", "__pycache__", "agent/__pycache__", ".pytest_cache",
                   ".hypothesis", ".mypy_cache", ".vscode"):  # fmt: skip
        assert ignored(rules, folder, True), folder
    for file in ("local.settings.json", "local.settings.example.json", "state.sqlite3",
                 ".local/host.sqlite3-wal", "agent/x.pyc", "requirements-dev.txt",
                 "requirements-infra.txt", "azure.yaml", ".funcignore", ".gitignore"):  # fmt: skip
        assert ignored(rules, file, False), file
    assert not ignored(rules, "agent/settings.py", False)


def test_the_package_is_small_and_holds_no_secret(tmp_path: Path):
    zip_path = tmp_path / "app.zip"
    build_package(ROOT, zip_path)
    size = zip_path.stat().st_size
    print(f"package: {size} bytes zipped")
    assert size < MAX_PACKAGE_BYTES
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            text = archive.read(name).decode("utf-8", errors="replace")
            for kind, shape in SECRET_SHAPES.items():
                assert not shape.search(text), f"{name} holds what looks like a {kind}"


def test_the_unpacked_package_indexes_every_function_of_the_app(tmp_path: Path):
    build_package(ROOT, tmp_path / "app.zip")
    unpacked = tmp_path / "wwwroot"
    with zipfile.ZipFile(tmp_path / "app.zip") as archive:
        archive.extractall(unpacked)
    count = (
        "import function_app; "
        "print(sorted(f.get_function_name() for f in function_app.app.get_functions()))"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "OPENAI_MODEL": "offline",
    }
    # Run from the unpacked folder only: nothing of the repository is importable there.
    packaged = subprocess.run(
        [sys.executable, "-c", count], cwd=unpacked, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert packaged.returncode == 0, packaged.stderr[-2000:]
    repository = subprocess.run(
        [sys.executable, "-c", count], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert packaged.stdout == repository.stdout
    assert "chat_turn" in packaged.stdout


def test_the_package_with_the_templates_app_settings_indexes_everything_with_no_bad_setting(
    tmp_path: Path,
):
    build_package(ROOT, tmp_path / "app.zip")
    unpacked = tmp_path / "wwwroot"
    with zipfile.ZipFile(tmp_path / "app.zip") as archive:
        archive.extractall(unpacked)
    env = as_resolved_on_azure(function_app_settings()) | {"PATH": os.environ.get("PATH", "")}
    script = (
        "import json, function_app\n"
        "from agent import runtime\n"
        "problem = runtime.settings_problem()\n"
        "print(json.dumps({'functions': len(function_app.app.get_functions()),\n"
        "    'problem': None if problem is None else str(problem),\n"
        "    'storage': None if problem else runtime.settings().conversations_storage}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=unpacked, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["problem"] is None
    assert report["storage"] == f"https://{STORAGE_ACCOUNT}.blob.core.windows.net"
    assert report["functions"] >= 15


def test_every_package_the_packaged_code_imports_is_pinned_in_requirements_txt(tmp_path: Path):
    build_package(ROOT, tmp_path / "app.zip")
    with zipfile.ZipFile(tmp_path / "app.zip") as archive:
        archive.extractall(tmp_path / "wwwroot")
    modules = third_party_imports(
        tmp_path / "wwwroot", {"agent", "storage", "wire", "function_app"}
    )
    assert unpinned(modules, ROOT / "requirements.txt") == []
