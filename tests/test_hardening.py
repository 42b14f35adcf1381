"""Every hardening default of DESIGN.md, observed from inside a real container.

Each check looks at the effect where it can (a write that fails, a connect that fails),
because gVisor's /proc does not report every flag that runc's does. Where runc and
gVisor differ, the test says so and asserts what holds for each.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from rlm_sandbox.sandbox.config import SandboxConfig
from rlm_sandbox.sandbox.docker import LABEL, LABEL_OWNER_PID, DockerSandbox

from .conftest import RUNTIMES, _unavailable, missing_runtime

MiB = 1024 * 1024


@pytest.fixture(scope="module", params=RUNTIMES)
def hardened(request):
    """One default-configured sandbox per runtime, shared by the read-only probes."""
    client = request.getfixturevalue("docker_client")
    request.getfixturevalue("sandbox_image")
    if request.param not in (client.info().get("Runtimes") or {}):
        _unavailable(missing_runtime(request.param))
    with DockerSandbox(SandboxConfig(runtime=request.param)) as sandbox:
        yield sandbox


def inside(sandbox, code: str):
    """Run `code`, which prints one JSON value, and return that value."""
    result = sandbox.execute(code, timeout_s=30)
    assert result.error is None, result.error
    return json.loads(result.stdout)


def status_field(sandbox, name: str) -> str | None:
    return inside(
        sandbox,
        "import json\n"
        "fields = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines())\n"
        f"print(json.dumps(fields.get({name!r}, '').strip() or None))",
    )


def test_runs_as_nobody(hardened):
    assert inside(
        hardened,
        "import os, json; print(json.dumps([os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()]))",
    ) == [
        65534,
        65534,
        65534,
        65534,
        [65534],
    ]


def test_no_capabilities(hardened):
    assert int(status_field(hardened, "CapEff"), 16) == 0
    assert int(status_field(hardened, "CapPrm"), 16) == 0
    assert int(status_field(hardened, "CapBnd"), 16) == 0, "cap_drop=ALL empties the bounding set"


def test_no_new_privileges(hardened):
    # prctl(PR_GET_NO_NEW_PRIVS) works under both runtimes; gVisor's /proc lacks the field.
    assert inside(hardened, "import ctypes, json; print(json.dumps(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0)))") == 1
    if hardened.config.runtime == "runc":
        assert status_field(hardened, "NoNewPrivs") == "1"


def test_seccomp_filter(hardened):
    if hardened.config.runtime == "runsc":
        # gVisor does not load the OCI profile inside the sandbox by default (its
        # --oci-seccomp flag breaks thread creation with this runsc and Docker 20.10);
        # its own Sentry is the syscall boundary, itself seccomp-filtered on the host.
        # What we can show from inside: mount(2), which the default profile exists to
        # stop, fails with EPERM. (unshare(CLONE_NEWUSER) is no evidence here: gVisor
        # allows it in a single-threaded process, and it grants nothing.)
        errno_seen = inside(
            hardened,
            "import ctypes, json, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "os.makedirs('/tmp/mnt', exist_ok=True)\n"
            "rc = libc.mount(b'none', b'/tmp/mnt', b'tmpfs', 0, None)\n"
            "print(json.dumps(ctypes.get_errno() if rc == -1 else 0))",
        )
        assert errno_seen == 1, f"mount gave errno {errno_seen}, expected EPERM"
        return
    assert status_field(hardened, "Seccomp") == "2", "mode 2 = filter (Docker's default profile)"


def test_network_is_loopback_only(hardened):
    observed = inside(
        hardened,
        "import json, socket\n"
        "routes = open('/proc/net/route').read().splitlines()[1:]\n"
        "errors = []\n"
        "for address in [('1.1.1.1', 53), ('172.17.0.1', 2375), ('169.254.169.254', 80)]:\n"
        "    s = socket.socket(); s.settimeout(3)\n"
        "    try:\n"
        "        s.connect(address); errors.append('connected')\n"
        "    except OSError as exc:\n"
        "        errors.append(type(exc).__name__)\n"
        "    finally:\n"
        "        s.close()\n"
        "print(json.dumps({'ifaces': [n for _, n in socket.if_nameindex()], 'routes': [r for r in routes if r.strip()], 'errors': errors}))",
    )
    assert observed["ifaces"] == ["lo"]
    assert observed["routes"] == []
    assert "connected" not in observed["errors"]


def test_root_filesystem_is_read_only(hardened):
    observed = inside(
        hardened,
        "import json, os\nout = {}\n"
        "for path in ['/var/tmp/probe', '/opt/rlm/evil.py', '/probe']:\n"
        "    try:\n"
        "        open(path, 'w').close(); out[path] = 'written'\n"
        "    except OSError as exc:\n"
        "        out[path] = exc.errno\n"
        "print(json.dumps(out))",
    )
    # /var/tmp is world-writable on a normal Debian rootfs, so EROFS (30) there proves
    # the mount is read-only rather than merely not ours.
    assert observed["/var/tmp/probe"] == 30
    assert "written" not in observed.values()


def test_tmp_is_a_small_noexec_tmpfs(hardened):
    observed = inside(
        hardened,
        "import json, os, shutil, subprocess\n"
        "v = os.statvfs('/tmp')\n"
        "shutil.copy('/bin/true', '/tmp/exe'); os.chmod('/tmp/exe', 0o755)\n"
        "try:\n"
        "    subprocess.run(['/tmp/exe']); ran = True\n"
        "except PermissionError:\n"
        "    ran = False\n"
        "os.remove('/tmp/exe')\n"
        "print(json.dumps({'size': v.f_blocks * v.f_frsize, 'ran': ran}))",
    )
    assert observed["size"] == 64 * MiB
    assert observed["ran"] is False, "noexec: a binary copied to /tmp must not run"


def test_tmp_fills_up_at_its_size(hardened):
    written, errno = inside(
        hardened,
        "import json, os\nwritten, errno = 0, None\nblock = b'x' * (1 << 20)\n"
        "try:\n"
        "    for i in range(100):\n"
        "        with open(f'/tmp/fill{i}', 'wb') as f:\n"
        "            f.write(block * 8)\n"
        "        written += 8\n"
        "except OSError as exc:\n"
        "    errno = exc.errno\n"
        "for i in range(100):\n"
        "    try: os.remove(f'/tmp/fill{i}')\n"
        "    except FileNotFoundError: pass\n"
        "print(json.dumps([written, errno]))",
    )
    assert written <= 64 and errno == 28, f"wrote {written} MiB into a 64 MiB tmpfs, then errno {errno}"


def test_ulimits(hardened):
    assert inside(
        hardened,
        "import json, resource\nprint(json.dumps([resource.getrlimit(resource.RLIMIT_NOFILE), resource.getrlimit(resource.RLIMIT_FSIZE)]))",
    ) == [[1024, 1024], [64 * MiB, 64 * MiB]]


def test_init_is_pid_1(hardened):
    cmdline = inside(hardened, "import json; print(json.dumps(open('/proc/1/cmdline', 'rb').read().decode()))")
    assert cmdline.startswith("/sbin/docker-init"), cmdline


def test_no_docker_socket_or_volume(hardened):
    observed = inside(
        hardened,
        "import json, os\n"
        "socks = [p for p in ['/var/run/docker.sock', '/run/docker.sock', '/run/containerd/containerd.sock'] if os.path.exists(p)]\n"
        "mounts = [line.split()[1] for line in open('/proc/mounts')]\n"
        "print(json.dumps({'socks': socks, 'mounts': mounts}))",
    )
    assert observed["socks"] == []
    # Only the root, /tmp and the kernel's own filesystems; no bind mount of host paths
    # beyond the files Docker itself binds: /etc/host* and the init binary (init=True).
    allowed_prefixes = (
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
        "/usr/sbin/docker-init",
    )
    assert all(m == "/" or m.startswith(allowed_prefixes) for m in observed["mounts"]), observed["mounts"]


def test_container_config_as_created(hardened, docker_client):
    """What the daemon recorded: the controls that are not observable from inside."""
    info = docker_client.api.inspect_container(hardened.container_id)
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["LogConfig"]["Type"] == "none"
    assert host["AutoRemove"] is True
    assert host["Memory"] == 512 * MiB and host["MemorySwap"] == 512 * MiB
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == 128
    assert host["Privileged"] is False
    assert not host.get("Binds") and not info.get("Mounts")
    labels = info["Config"]["Labels"]
    assert labels[LABEL] == "1" and labels[LABEL_OWNER_PID] == str(os.getpid())
    assert info["Config"]["StdinOnce"] is True


def test_no_host_environment_variable_reaches_the_sandbox(runtime, monkeypatch):
    canary = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("RLM_TEST_CANARY_SECRET", canary)
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    with DockerSandbox(SandboxConfig(runtime=runtime)) as sandbox:
        code = (
            "import glob, json, os\nseen = json.dumps(dict(os.environ))\n"
            "for path in glob.glob('/proc/*/environ'):\n"
            "    try:\n"
            "        seen += open(path, 'rb').read().decode('utf-8', 'replace')\n"
            "    except OSError:\n"
            "        pass\n"
            f"print(json.dumps([{canary!r} in seen, sorted(os.environ)]))"
        )
        found, names = inside(sandbox, code)
    assert found is False
    assert "OPENAI_API_KEY" not in names and "RLM_TEST_CANARY_SECRET" not in names


def test_pids_limit_stops_a_fork_loop(runtime):
    with DockerSandbox(SandboxConfig(runtime=runtime)) as sandbox:
        result = sandbox.execute(
            "import subprocess\nchildren = []\n"
            "try:\n"
            "    while len(children) < 1000:\n"
            "        children.append(subprocess.Popen(['sleep', '60']))\n"
            "except OSError as exc:\n"
            "    print(len(children), type(exc).__name__)\n"
            "for child in children:\n"
            "    child.kill(); child.wait()",
            timeout_s=60,
        )
        if runtime == "runsc" and result.restarted:
            # Under gVisor the pids cgroup counts the Sentry's host threads, so the loop
            # exhausts them and the whole sandbox dies instead; it is replaced cleanly.
            assert result.error_type == "SandboxDied"
        else:
            count, error = result.stdout.split()
            assert int(count) < 128 and error == "BlockingIOError"
        assert sandbox.execute("1 + 1").stdout == "2\n"


def test_memory_limit_is_reported_as_oom(runtime):
    with DockerSandbox(SandboxConfig(runtime=runtime)) as sandbox:
        result = sandbox.execute("hog = bytearray(1024 * 1024 * 1024)\nhog[::4096] = b'x' * len(hog[::4096])")
        assert result.restarted
        assert "OOMKilled" in result.error
        assert "512m" in result.error
        assert sandbox.execute("'alive'").stdout == "'alive'\n"
