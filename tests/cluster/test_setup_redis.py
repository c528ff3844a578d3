"""
Tests for C{scripts/setup-redis}, run on a C{PATH} of fakes, as setup-irc's are.

The system redis-server that the package's postinst may start is played by a real process (a
C{sleep}) whose id the fake C{redis-cli} reports, with the configuration file it was started
from, while C{$FAKE/running} names it and it lives: the fake C{systemctl} and C{service} stop
it by removing that file, the script's last resort kills the process itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import ROOT, TIMEOUT
from tests.web.test_browser_setup import executable

SETUP = ROOT / "scripts" / "setup-redis"

VERSION = "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=e08dbad3e06f3fb"

FAKE_APT = f"""#!/bin/sh
echo "$*" >> "$FAKE/calls"
if [ "$1" = install ] && [ -z "$NO_BINARY" ]; then
    printf '#!/bin/sh\\necho "{VERSION}"\\n' > "$FAKE/bin/redis-server"
    chmod +x "$FAKE/bin/redis-server"
fi
"""

FAKE_APT_WITHOUT_LISTS = f"""#!/bin/sh
echo "$*" >> "$FAKE/calls"
if [ "$1" = update ]; then
    : > "$FAKE/updated"
elif [ ! -e "$FAKE/updated" ]; then
    echo "E: Unable to locate package redis-server"
    exit 100
else
    printf '#!/bin/sh\\necho "{VERSION}"\\n' > "$FAKE/bin/redis-server"
    chmod +x "$FAKE/bin/redis-server"
fi
"""

FAKE_REDIS_CLI = """#!/bin/sh
# Only `redis-cli -h 127.0.0.1 -p 6379 info server` is expected.
if [ "$*" != "-h 127.0.0.1 -p 6379 info server" ]; then
    echo "unexpected: redis-cli $*" >> "$FAKE/calls"
    exit 2
fi
if pid=$(cat "$FAKE/running" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; then
    printf '# Server\\r\\nredis_version:7.0.15\\r\\nprocess_id:%s\\r\\nconfig_file:%s\\r\\n' \\
        "$pid" "${CONFIG_FILE-/etc/redis/redis.conf}"
else
    echo "Could not connect to Redis at 127.0.0.1:6379: Connection refused"
    exit 1
fi
"""

FAKE_SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "$FAKE/calls"
case "$*" in
    is-system-running) echo "${SYSTEMD:-running}"; [ "${SYSTEMD:-running}" = running ] ;;
    "is-active --quiet redis-server") [ -e "$FAKE/running" ] ;;
    "disable --now redis-server") rm -f "$FAKE/running" ;;
    *) exit 1 ;;
esac
"""

FAKE_SERVICE = """#!/bin/sh
echo "service $*" >> "$FAKE/calls"
case "$*" in
    "redis-server status") [ -e "$FAKE/running" ] || { echo "redis-server is not running ... failed!"; exit 3; } ;;
    "redis-server stop") rm -f "$FAKE/running" ;;
    *) exit 1 ;;
esac
"""

FAKE_UPDATE_RC_D = """#!/bin/sh
echo "update-rc.d $*" >> "$FAKE/calls"
"""

FAKE_SUDO = """#!/bin/sh
[ "$1" = -n ] && shift
echo "sudo $*" >> "$FAKE/calls"
exec "$@"
"""

INSTALL = "install -y -q --no-install-recommends redis-server\n"

INSTALLED = "setup-redis: installed redis-server: Redis server v=7.0.15\n"

NONE_STARTED = "setup-redis: the package started no system redis-server (none from /etc/redis answers on port 6379)\n"


class SetupRedisTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fake = Path(self.mktemp()).resolve()
        self.bin = self.fake / "bin"
        self.bin.mkdir(parents=True)
        for tool in ("env", "mktemp", "grep", "cat", "rm", "chmod", "printf", "sleep", "true"):
            real = shutil.which(tool)
            if real is not None:
                (self.bin / tool).symlink_to(real)
        executable(self.bin / "id", "#!/bin/sh\necho 0\n")
        executable(self.bin / "redis-cli", FAKE_REDIS_CLI)

    def run_(self, ci: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": str(self.bin), "FAKE": str(self.fake), **({"CI": ci} if ci else {}), **extra}
        return subprocess.run(
            [shutil.which("bash") or "bash", str(SETUP)], env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=TIMEOUT,
        )

    def calls(self) -> str:
        path = self.fake / "calls"
        return path.read_text() if path.exists() else ""

    def systemRedis(self) -> subprocess.Popen[bytes]:
        """The package's redis-server, as the postinst would have started it: a process that lives."""
        daemon = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)

        def gone() -> None:
            if daemon.poll() is None:
                daemon.kill()
            daemon.wait(TIMEOUT)

        self.addCleanup(gone)
        # Reaped as soon as it dies, so that the fake redis-cli sees it gone (not a zombie).
        threading.Thread(target=daemon.wait, daemon=True).start()
        (self.fake / "running").write_text(str(daemon.pid))
        return daemon

    def test_executable(self) -> None:
        self.assertTrue(os.access(SETUP, os.X_OK))

    def test_alreadyInstalled(self) -> None:
        """redis-server there: said so, apt is not called and nothing is stopped."""
        executable(self.bin / "redis-server", "#!/bin/sh\n")
        executable(self.bin / "apt-get", FAKE_APT)
        executable(self.bin / "systemctl", FAKE_SYSTEMCTL)
        daemon = self.systemRedis()
        finished = self.run_()
        self.assertEqual(
            (finished.returncode, finished.stdout),
            (0, f"setup-redis: redis-server already installed at {self.bin / 'redis-server'}\n"),
        )
        self.assertEqual(self.calls(), "")
        self.assertIsNone(daemon.poll())

    def test_installs(self) -> None:
        """Installed; no init system, and the package started nothing: nothing to stop."""
        executable(self.bin / "apt-get", FAKE_APT)
        finished = self.run_()
        self.assertEqual((finished.returncode, finished.stdout, finished.stderr), (0, INSTALLED + NONE_STARTED, ""))
        self.assertEqual(self.calls(), INSTALL)

    def test_afterUpdate(self) -> None:
        """No package lists: apt-get update, then the package again."""
        executable(self.bin / "apt-get", FAKE_APT_WITHOUT_LISTS)
        finished = self.run_()
        self.assertEqual(
            (finished.returncode, finished.stdout),
            (0, "setup-redis: installed redis-server (after apt-get update): Redis server v=7.0.15\n" + NONE_STARTED),
        )
        self.assertEqual(self.calls(), INSTALL + "update -q\n" + INSTALL)

    def test_noInitSystem(self) -> None:
        """systemctl there but systemd not running, service finding nothing: not a failure."""
        executable(self.bin / "apt-get", FAKE_APT)
        executable(self.bin / "systemctl", FAKE_SYSTEMCTL)
        executable(self.bin / "service", FAKE_SERVICE)
        finished = self.run_(SYSTEMD="offline")
        self.assertEqual((finished.returncode, finished.stdout, finished.stderr), (0, INSTALLED + NONE_STARTED, ""))
        self.assertEqual(
            self.calls(), INSTALL + "systemctl is-system-running\nservice redis-server status\n"
        )

    def test_stopsTheSystemdService(self) -> None:
        """Under systemd, a service the postinst started is stopped and disabled with systemctl."""
        executable(self.bin / "apt-get", FAKE_APT)
        executable(self.bin / "systemctl", FAKE_SYSTEMCTL)
        executable(self.bin / "service", FAKE_SERVICE)
        daemon = self.systemRedis()
        finished = self.run_()
        self.assertEqual(
            (finished.returncode, finished.stdout),
            (0, INSTALLED + "setup-redis: stopped and disabled the system redis-server service that the package "
                "started on port 6379 (systemctl disable --now redis-server); the tests start their own\n"),
        )
        self.assertEqual(
            self.calls(),
            INSTALL + "systemctl is-system-running\nsystemctl is-active --quiet redis-server\n"
            "systemctl disable --now redis-server\n",
        )
        self.assertIsNone(daemon.poll(), "stopped through systemctl, not killed")

    def test_systemdServiceNotRunning(self) -> None:
        """Under systemd, a service that is not active is left as it is."""
        executable(self.bin / "apt-get", FAKE_APT)
        executable(self.bin / "systemctl", FAKE_SYSTEMCTL)
        finished = self.run_()
        self.assertEqual((finished.returncode, finished.stdout), (0, INSTALLED + NONE_STARTED))
        self.assertEqual(
            self.calls(), INSTALL + "systemctl is-system-running\nsystemctl is-active --quiet redis-server\n"
        )

    def test_stopsTheInitScript(self) -> None:
        """Without systemd, a service the postinst started is stopped with service, and disabled."""
        executable(self.bin / "apt-get", FAKE_APT)
        executable(self.bin / "systemctl", FAKE_SYSTEMCTL)
        executable(self.bin / "service", FAKE_SERVICE)
        executable(self.bin / "update-rc.d", FAKE_UPDATE_RC_D)
        self.systemRedis()
        finished = self.run_(SYSTEMD="offline")
        self.assertEqual(
            (finished.returncode, finished.stdout),
            (0, INSTALLED + "setup-redis: stopped and disabled the system redis-server service that the package "
                "started on port 6379 (service redis-server stop; update-rc.d redis-server disable); "
                "the tests start their own\n"),
        )
        self.assertEqual(
            self.calls(),
            INSTALL + "systemctl is-system-running\nservice redis-server status\nservice redis-server stop\n"
            "update-rc.d redis-server disable\n",
        )

    def test_killsTheDaemon(self) -> None:
        """No service to stop it with: the daemon started from /etc/redis is killed."""
        executable(self.bin / "apt-get", FAKE_APT)
        daemon = self.systemRedis()
        finished = self.run_()
        self.assertEqual(
            (finished.returncode, finished.stdout),
            (0, INSTALLED + f"setup-redis: killed the redis-server that the package started from /etc/redis "
                f"on port 6379 (pid {daemon.pid}); the tests start their own\n"),
        )
        self.assertEqual(daemon.wait(TIMEOUT), -15)

    def test_leavesAnotherRedisAlone(self) -> None:
        """A redis-server on port 6379 not started from /etc/redis is not the package's: left alone."""
        executable(self.bin / "apt-get", FAKE_APT)
        daemon = self.systemRedis()
        finished = self.run_(CONFIG_FILE="")
        self.assertEqual((finished.returncode, finished.stdout), (0, INSTALLED + NONE_STARTED))
        self.assertIsNone(daemon.poll())

    def test_throughSudo(self) -> None:
        """Not root: apt, and stopping the service, through sudo -n."""
        executable(self.bin / "id", "#!/bin/sh\necho 1000\n")
        executable(self.bin / "sudo", FAKE_SUDO)
        executable(self.bin / "apt-get", FAKE_APT)
        executable(self.bin / "systemctl", FAKE_SYSTEMCTL)
        self.systemRedis()
        finished = self.run_()
        self.assertEqual(finished.returncode, 0, finished.stderr)
        self.assertIn("(systemctl disable --now redis-server)", finished.stdout)
        calls = self.calls()
        self.assertIn(f"sudo env DEBIAN_FRONTEND=noninteractive apt-get {INSTALL}", calls)
        self.assertIn("sudo systemctl disable --now redis-server\n", calls)

    def test_noBinaryAfterInstall(self) -> None:
        """apt succeeds but no redis-server appears: a skip, an error under CI=true."""
        executable(self.bin / "apt-get", FAKE_APT)
        finished = self.run_(NO_BINARY="1")
        self.assertEqual(finished.returncode, 0)
        self.assertIn("no redis-server binary was found", finished.stdout)
        self.assertIn("the Redis tests will be skipped", finished.stdout)
        self.assertEqual(self.run_("true", NO_BINARY="1").returncode, 1)

    def test_cannotUnderCI(self) -> None:
        """No apt: a skip elsewhere, an error under CI=true."""
        self.assertEqual(self.run_().returncode, 0)
        finished = self.run_("true")
        self.assertEqual(finished.returncode, 1)
        self.assertIn("cannot install redis-server: apt-get not found", finished.stderr)
