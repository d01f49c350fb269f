"""The systemd unit of the headless wearable (assets/earsight.service) and its installer.

systemd-analyze scores the unit as install.sh writes it (offline: no running systemd needed);
the rest reads the unit and the installer's --service part as text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "assets" / "earsight.service"
MAX_EXPOSURE = 4.0  # systemd-analyze's "OK" band ends at 4.9; the issue asks for ≤ 4.0
PREFIX = "/opt/earsight"  # install.sh's default

pytestmark = pytest.mark.faults


def installed_unit(tmp_path: Path) -> Path:
    """The unit with install.sh's substitution, under the name it is installed as."""
    path = tmp_path / "earsight.service"
    path.write_text(UNIT.read_text().replace("@EARSIGHT_HOME@", PREFIX))
    return path


def settings(text: str) -> dict[str, list[str]]:
    """Key → values of a unit file (comments and section headers left out)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_unit_scores_at_most_4_in_systemd_analyze_security(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for earsight\.service: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m[1]) <= MAX_EXPOSURE, proc.stdout


def test_the_unit_runs_unprivileged_read_only_code_without_network():
    unit = settings(UNIT.read_text())
    assert unit["User"] == ["earsight"] and unit["Group"] == ["earsight"]
    assert set(unit["SupplementaryGroups"][0].split()) == {"audio", "video", "input"}
    assert unit["ExecStart"][0].startswith("@EARSIGHT_HOME@/.venv/bin/earsight live")
    assert unit["ProtectSystem"] == ["strict"] and unit["ProtectHome"] == ["yes"]  # code: r/o
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX"] and unit["PrivateNetwork"] == ["yes"]
    assert unit["DevicePolicy"] == ["closed"]
    assert unit["CapabilityBoundingSet"] == [""] and unit["NoNewPrivileges"] == ["yes"]


def test_every_variable_the_unit_mentions_is_read_by_the_app():
    text = UNIT.read_text()
    code = "\n".join(
        p.read_text()
        for folder in ("earsight", "app", "engine", "trainer")
        for p in (ROOT / folder).rglob("*.py")
    )
    for name in set(re.findall(r"\bEARSIGHT_[A-Z_]+\b", text)) - {"EARSIGHT_HOME"}:
        assert f'"{name}"' in code, f"{name} is named in the unit but nothing reads it"


def test_install_service_creates_the_user_and_a_root_owned_copy():
    script = (ROOT / "install.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "install.sh")], check=False).returncode == 0
    part = script[script.index('if [ "$SERVICE" = 1 ]; then') :]
    assert "useradd --system" in part and "--shell /usr/sbin/nologin" in part
    assert "usermod -a -G audio,video,input" in part
    assert 'chown -R root:root "$PREFIX"' in part and 'chmod -R go-w "$PREFIX"' in part
    assert "s#@EARSIGHT_HOME@#$PREFIX#g" in part and "$(pwd)" not in part  # not the checkout


def test_install_service_leaves_the_checkouts_venv_alone():
    # `sudo ./install.sh --service` made the checkout's .venv root-owned: the user's next
    # ./install.sh failed on permissions. The checkout's venv part runs only without --service.
    script = (ROOT / "install.sh").read_text()
    venv = script[script.index("# --- virtual environment") :]
    guard = venv.index('if [ "$SERVICE" = 1 ]; then')
    assert guard < venv.index("\nelse\n") < venv.index('-m venv "${VENV_ARGS[@]}" .venv')


def _install_code_function() -> str:
    script = (ROOT / "install.sh").read_text()
    start = script.index("install_code() {")
    return script[start : script.index("\n}\n", start) + 3]


def test_the_service_copy_is_the_tracked_files_and_replaces_the_old_code(tmp_path):
    """install.sh --service's copy (its install_code, run for real with SUDO empty): a user's
    untracked files in the checkout stay out, a module deleted upstream does not survive an
    upgrade, the service's .venv is kept."""
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(checkout)], check=True, timeout=300)
    (checkout / "my-notes.txt").write_text("private")
    (checkout / "wavs").mkdir()
    (checkout / "wavs" / "a.wav").write_bytes(b"RIFF")
    prefix = tmp_path / "opt-earsight"
    (prefix / "app").mkdir(parents=True)
    (prefix / "app" / "removed_upstream.py").write_text("X = 1\n")
    (prefix / ".venv").mkdir()
    (prefix / ".venv" / "marker").write_text("kept")
    bash = f'SUDO=""\n{_install_code_function()}\ninstall_code "$1"'
    done = subprocess.run(
        ["bash", "-c", bash, "install.sh", str(prefix)],
        cwd=checkout, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (prefix / "app" / "cli.py").is_file() and (prefix / "pyproject.toml").is_file()
    assert not (prefix / "app" / "removed_upstream.py").exists()
    assert not (prefix / "my-notes.txt").exists() and not (prefix / "wavs").exists()
    assert (prefix / ".venv" / "marker").read_text() == "kept"
    assert not list(prefix.glob(".code.*"))  # the staging folder is gone
