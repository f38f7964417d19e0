""".ci/system-packages: installs the tests' Debian packages when missing and permitted; otherwise
one message naming exactly the packages and the command that installs them (exit 1)."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "system-packages"
INSTALL = "apt-get install -y --no-install-recommends"


def run(env_extra, *args, user=None, path=None):
    env = {k: v for k, v in os.environ.items() if k not in ("CHROMIUM", "CHROMEDRIVER", "PG_BINDIR")}
    env.update(env_extra)
    if path is not None:
        env["PATH"] = path
    cmd = ["bash", str(SCRIPT), *args]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in env_extra.items()), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def fake_bins():
    """Executables that stand in for chromium, chromedriver and a PostgreSQL bindir, in a folder
    that an unprivileged user can read too (pytest's tmp_path is private to this user)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        yield _fake_bins(Path(tmp))


def _fake_bins(tmp_path):
    exe = tmp_path / "exe"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    pg = tmp_path / "pg"
    pg.mkdir()
    shutil.copy(exe, pg / "initdb")
    return {"CHROMIUM": str(exe), "CHROMEDRIVER": str(exe), "PG_BINDIR": str(pg)}


def test_nothing_to_do_when_everything_is_there(fake_bins):
    if not shutil.which("g++"):
        pytest.fail("g++ is missing: bash .ci/system-packages installs it")
    r = run(fake_bins)
    assert r.returncode == 0 and "are present" in r.stdout, r.stderr


def test_dry_run_names_the_missing_packages_and_installs_nothing(fake_bins, tmp_path):
    r = run({**fake_bins, "CHROMEDRIVER": str(tmp_path / "none"), "PG_BINDIR": str(tmp_path / "none")}, "--dry-run")
    if os.geteuid() != 0 and r.returncode == 1:  # not root, no password-less sudo: the refusal (tested below)
        assert f"{INSTALL} postgresql chromium-driver" in r.stderr
        return
    assert r.returncode == 0, r.stderr
    assert f"{INSTALL} postgresql chromium-driver -qq" in r.stdout and "would run" in r.stdout


def test_without_root_or_sudo_it_says_exactly_which_packages_to_install(fake_bins, tmp_path):
    missing = {**fake_bins, "CHROMIUM": "/nonexistent/chromium", "CHROMEDRIVER": "/nonexistent/chromedriver"}
    if os.geteuid() == 0:
        r = run(missing, user="nobody")  # root runs it as an unprivileged user
    else:
        r = run(missing, path=f"{tmp_path}:/usr/bin:/bin")  # no sudo found on this PATH unless /usr/bin has one
        if "installing" in r.stdout:
            pytest.skip("this user has password-less sudo")
    assert r.returncode == 1
    assert "not root" in r.stderr and "not installed here: chromium chromium-driver" in r.stderr
    assert f"sudo apt-get update && sudo {INSTALL} chromium chromium-driver\n" in r.stderr


def test_a_failing_apt_get_still_names_the_packages(fake_bins, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("runs the install path, which needs root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text("#!/bin/sh\necho 'E: Could not open lock file (fake apt-get)' >&2\nexit 100\n")
    (bin_dir / "apt-get").chmod(0o755)
    r = run({**fake_bins, "CHROMIUM": "/nonexistent/chromium"}, path=f"{bin_dir}:{os.environ['PATH']}")
    assert r.returncode == 1
    assert "fake apt-get" in r.stderr and "apt-get failed" in r.stderr
    assert f"sudo {INSTALL} chromium\n" in r.stderr
