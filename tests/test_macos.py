"""What macOS itself may be behind a failure, said in words: Local Network Privacy for "No route to
host" (a real one, from an address on the rig's LAN nobody has), protected folders for EPERM."""

import errno
import os
import sys

from conftest import code, container_project, mm4, write_notebook

from mm4watch.core import macos


def test_no_route_to_host_names_local_network_privacy_and_the_daemon_that_is_exempt():
    said = macos.lan_hint("ssh: connect to host 192.168.1.20 port 22: No route to host")
    assert "Local Network Privacy" in said and "mm4watch service install --at-boot" in said
    assert "mm4watch pool worker" in said
    assert macos.lan_hint("ssh: connect to host 192.168.1.20 port 22: Connection refused") == ""


def test_operation_not_permitted_names_the_python_to_grant_full_disk_access():
    said = macos.tcc_hint(PermissionError(errno.EPERM, "Operation not permitted"))
    assert os.path.realpath(sys.executable) in said and "Full Disk Access" in said
    assert macos.tcc_hint(PermissionError(errno.EACCES, "Permission denied")) == ""


def test_a_mini_with_no_route_to_it_is_said_in_words(tmp_path, pool):
    """An address on the rig's LAN that nobody holds: ssh's own "No route to host" (after ARP gives up)."""
    toml = '[run]\nexecutor = "mini"\n\n[executors.mini]\ntype = "docker"\nhost = "ssh://me@172.30.0.99"\n'
    project = container_project(tmp_path, toml)
    write_notebook(project / "notebooks" / "x.ipynb", code("# mm4: remote\nx = 1"))
    done = mm4(["run", "notebooks/x.ipynb"], cwd=project, timeout=120)
    assert done.returncode == 75, done.stderr
    assert "No route to host" in done.stderr and "Local Network Privacy" in done.stderr, done.stderr
    doctor = mm4(["doctor"], cwd=project, timeout=120)
    assert doctor.returncode == 1 and "Local Network Privacy" in doctor.stdout, doctor.stdout


def test_urllib3s_warning_about_libressl_stays_out_of_a_run(tmp_path):
    """A Mac's stock python3 is linked against LibreSSL: urllib3 2 warns at import, from requests, which
    papermill imports. The runner's papermill import filters that warning (by its text) and no other."""
    import subprocess

    probe = (
        "import warnings\nfrom mm4watch.core import lean_imports\nlean_imports.quiet_libressl()\n"
        "warnings.warn(\"urllib3 v2 only supports OpenSSL 1.1.1+, currently the 'ssl' module is compiled with "
        "'LibreSSL 2.8.3'. See: https://github.com/urllib3/urllib3/issues/3020\", UserWarning)\n"
        "warnings.warn('another warning', UserWarning)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "LibreSSL" not in done.stderr and "another warning" in done.stderr


def test_ssh_options_reach_an_rsync_that_splits_on_whitespace(tmp_path, mac):
    """openrsync (a Mac's rsync since 15.4) splits `-e` on whitespace and ignores quotes: options with a
    space reach ssh whole (through a script of the user's own), and rsync over it works."""
    import subprocess

    from support import mac_ssh_options

    from mm4watch.remote import ssh

    options = [*mac_ssh_options(mac), "-o", "ServerAliveInterval 17", "-o", "SetEnv MM4_NOTE=x"]
    target = ssh.Target(f"{mac['MAC_USER']}@{mac['MAC_HOST']}", None, tuple(options))
    shell = target.rsync_shell()
    words = shell.split()  # what openrsync does with it
    seen = subprocess.run([*words, "-G", "somewhere"], capture_output=True, text=True, timeout=30)
    assert seen.returncode == 0, seen.stderr
    assert "serveraliveinterval 17" in seen.stdout and "setenv MM4_NOTE=x" in seen.stdout, seen.stdout
    assert "batchmode yes" in seen.stdout
    plain = ssh.Target("me@host", 22, ("-i", "/home/me/.ssh/id_ed25519"))
    assert plain.rsync_shell() == (
        "ssh -o BatchMode=yes -p 22 -i /home/me/.ssh/id_ed25519 "
        "-o ConnectTimeout=10 -o ServerAliveInterval=15 -o ServerAliveCountMax=8"
    )

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("arrived")
    dest = f"mm4-rsync-e-{os.getpid()}"
    done = subprocess.run(
        ["rsync", "-a", "-e", shell, f"{tmp_path / 'src'}/", f"{target.destination}:{dest}/"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    from conftest import on_mac

    assert on_mac(mac, f"cat ~/{dest}/a.txt && rm -rf ~/{dest}", user="me") == "arrived"
