"""
Packaging tests: build the real wheel, install it (and an editable install) into a fresh virtual
environment, and run that environment's C{twistd chatroom --help} from a directory outside the
checkout, the way a user would.

Every build runs on a copy of the source tree in a temporary directory, so that it never writes
C{build/} or C{*.egg-info} into the checkout. Builds use pip's build isolation, as C{pip install .}
does: a fresh virtual environment has no setuptools new enough to build chatsvc (Python 3.11's has
setuptools 65.5, 3.12's none), so C{--no-build-isolation} would not work there. Build isolation
installs setuptools from the package index (PyPI, or the index pip is configured to use).

The fresh environments get chatsvc only (C{--no-deps}); Twisted and structlog come from the
interpreter running these tests, through a C{.pth} file. That keeps the tests fast and offline
after the build, while the code under test (chatsvc and the plugin file) comes from our wheel or our
editable install only: each test checks where the plugin and chatsvc were imported from.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from collections.abc import Sequence
from pathlib import Path

import structlog
import twisted
import zope.interface
from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
"""The checkout."""

PIP_TIMEOUT = 300.0
"""Seconds for one pip command; a build may download setuptools into its isolated environment."""

TIMEOUT = 60.0
"""Seconds for any other command."""

HELP_OPTIONS = ("--listen", "--port", "--log-format", "--max-line-length")
"""Options that C{twistd chatroom --help} must list."""

PLUGIN = "twisted/plugins/chatroom_plugin.py"

_SHOWN = 3000
"""Characters of a failed command's output (its end) shown in the failure."""

_NOT_SOURCE = shutil.ignore_patterns(
    ".*", "_trial_temp*", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", "venv"
)
"""What a copy of the source tree leaves out: VCS data, virtual environments, build output."""

_TWISTD = """\
#!{python}
import sys
from twisted.scripts.twistd import run
if __name__ == "__main__":
    sys.exit(run())
"""
"""The C{twistd} launcher, as pip would write it when installing Twisted into the environment."""

_WHERE_FROM = """\
import json
import chatsvc
import twisted.plugins.chatroom_plugin as plugin
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
print(json.dumps({
    "chatsvc": chatsvc.__file__,
    "plugin": plugin.__file__,
    "tapnames": sorted(maker.tapname for maker in getPlugins(IServiceMaker)),
}))
"""
"""Run in a fresh environment: where chatsvc and the plugin come from, and what twistd finds."""


def _environment() -> dict[str, str]:
    """
    The environment for every command: this one without anything that would put the checkout (or
    a user's site-packages) on C{sys.path}, so that only what was installed can be imported.
    """
    unwanted = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV"}
    env = {name: value for name, value in os.environ.items() if name not in unwanted}
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _dependencyDirectories() -> list[str]:
    """
    The directories from which this interpreter imports chatsvc's dependencies (Twisted and its
    own dependencies, structlog), to be put on a fresh environment's path. Never the checkout.
    """
    paths = sysconfig.get_paths()
    directories = [Path(paths["purelib"]), Path(paths["platlib"])]
    for package, depth in [(twisted, 2), (structlog, 2), (zope.interface, 3)]:
        assert package.__file__ is not None
        directories.append(Path(package.__file__).resolve().parents[depth - 1])
    unique = dict.fromkeys(str(directory.resolve()) for directory in directories)
    return [directory for directory in unique if Path(directory) != ROOT]


class PackagingTestCase(SynchronousTestCase):
    """Helpers: temporary directories outside the checkout, commands, fresh environments."""

    def directory(self) -> Path:
        """A new temporary directory outside the checkout, removed after the test."""
        path = Path(tempfile.mkdtemp(prefix="chatsvc-packaging-")).resolve()
        self.addCleanup(shutil.rmtree, path, ignore_errors=True)
        self.assertFalse(path.is_relative_to(ROOT), f"{path} is inside the checkout {ROOT}")
        return path

    def runCommand(self, command: Sequence[str | Path], cwd: Path, timeout: float = TIMEOUT) -> str:
        """
        Run C{command} in C{cwd} and return its standard output.

        @raise AssertionError: if it exits non-zero (its output is in the message) or times out.
        """
        arguments = [str(argument) for argument in command]
        try:
            result = subprocess.run(
                arguments,
                cwd=cwd,
                env=_environment(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as error:
            self.fail(f"{arguments} did not finish within {timeout}s: {error.output!r}")
        if result.returncode != 0:
            self.fail(
                f"{arguments} exited with {result.returncode}\n"
                f"--- stdout (end)\n{result.stdout[-_SHOWN:]}\n"
                f"--- stderr (end)\n{result.stderr[-_SHOWN:]}"
            )
        return result.stdout

    def sourceTree(self) -> Path:
        """
        A copy of the checkout's source tree in a temporary directory, with a stray
        C{twisted/plugins/dropin.cache} in it, as running the tests leaves in a checkout.
        """
        tree = self.directory() / "chatsvc"
        shutil.copytree(ROOT, tree, ignore=_NOT_SOURCE, symlinks=True)
        (tree / "twisted" / "plugins" / "dropin.cache").write_bytes(b"stale plugin cache")
        return tree

    def buildWheel(self, tree: Path) -> Path:
        """Build the wheel of C{tree} the way C{pip install .} does, and return its path."""
        wheels = self.directory()
        self.runCommand(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheels, tree],
            cwd=wheels,
            timeout=PIP_TIMEOUT,
        )
        [wheel] = wheels.glob("chatsvc-*.whl")
        return wheel

    def freshEnvironment(self, dependencies: bool = True) -> Path:
        """
        A new virtual environment with no chatsvc in it and return its C{python}; with
        C{dependencies}, chatsvc's dependencies are importable there and its C{twistd} runs this
        interpreter's Twisted.
        """
        venv = self.directory() / "venv"
        self.runCommand([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
        python = venv / "bin" / "python"
        if not dependencies:
            return python
        sitePackages = Path(
            self.runCommand(
                [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd=venv,
            ).strip()
        )
        (sitePackages / "chatsvc_test_dependencies.pth").write_text(
            "".join(f"{directory}\n" for directory in _dependencyDirectories())
        )
        twistd = venv / "bin" / "twistd"
        twistd.write_text(_TWISTD.format(python=python))
        twistd.chmod(0o755)
        return python

    def install(self, python: Path, *requirement: str | Path) -> None:
        """C{pip install --no-deps} C{requirement} into the environment of C{python}."""
        self.runCommand(
            [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", *requirement],
            cwd=python.parent,
            timeout=PIP_TIMEOUT,
        )

    def assertChatroomHelp(self, python: Path, elsewhere: Path) -> None:
        """
        The environment's C{twistd chatroom --help}, run in C{elsewhere}, exits 0 and lists the
        chat room's options.
        """
        helpText = self.runCommand([python.parent / "twistd", "chatroom", "--help"], cwd=elsewhere)
        self.assertIn("chatroom", helpText)
        for option in HELP_OPTIONS:
            self.assertIn(option, helpText)

    def importedFrom(self, python: Path, elsewhere: Path) -> tuple[Path, Path]:
        """
        Check that twistd's plugin lookup in that environment, run in C{elsewhere}, finds
        C{chatroom}, and return the files that C{chatsvc} and the plugin were imported from.
        """
        found = json.loads(self.runCommand([python, "-I", "-c", _WHERE_FROM], cwd=elsewhere))
        self.assertIn("chatroom", found["tapnames"])
        return Path(found["chatsvc"]).resolve(), Path(found["plugin"]).resolve()


class WheelTests(PackagingTestCase):
    """The wheel holds what it must and nothing else, and works when installed."""

    def test_contents(self) -> None:
        """
        The wheel built from a tree with a stray C{dropin.cache} holds every chatsvc module and the
        plugin file, and nothing else: no C{dropin.cache}, no C{twisted/__init__.py} or
        C{twisted/plugins/__init__.py} (either would shadow Twisted's own), no tests.
        """
        tree = self.sourceTree()
        wheel = self.buildWheel(tree)
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())

        modules = {path.relative_to(tree).as_posix() for path in (tree / "chatsvc").rglob("*.py")}
        self.assertIn("chatsvc/__init__.py", modules)
        self.assertEqual(modules - names, set(), "chatsvc modules missing from the wheel")
        self.assertEqual({name for name in names if name.startswith("twisted/")}, {PLUGIN})
        self.assertEqual([name for name in names if name.endswith("dropin.cache")], [])
        self.assertEqual([name for name in names if name.startswith("tests/")], [])
        topLevel = {name.split("/")[0] for name in names}
        self.assertEqual(
            {name for name in topLevel if not name.endswith(".dist-info")}, {"chatsvc", "twisted"}
        )

    def test_consoleScripts(self) -> None:
        """Every console script the wheel declares points at a module that is in the wheel."""
        wheel = self.buildWheel(self.sourceTree())
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            [entryPoints] = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
            parser = configparser.ConfigParser()
            parser.read_string(archive.read(entryPoints).decode("utf-8"))
        scripts = dict(parser["console_scripts"]) if parser.has_section("console_scripts") else {}
        missing = {}
        for script, target in scripts.items():
            module = target.split(":")[0].strip().replace(".", "/")
            if not {f"{module}.py", f"{module}/__init__.py"} & names:
                missing[script] = target
        self.assertEqual(missing, {}, "console scripts whose module is not in the wheel")

    def test_installed(self) -> None:
        """
        After C{pip install} of the wheel into a fresh environment, its C{twistd chatroom --help}
        works from a directory outside the checkout, with chatsvc and the plugin imported from
        that environment.
        """
        wheel = self.buildWheel(self.sourceTree())
        python = self.freshEnvironment()
        self.install(python, wheel)
        elsewhere = self.directory()

        self.assertChatroomHelp(python, elsewhere)
        venv = python.parent.parent.resolve()
        chatsvcFile, pluginFile = self.importedFrom(python, elsewhere)
        self.assertTrue(pluginFile.is_relative_to(venv), f"{pluginFile} is not from {venv}")
        self.assertTrue(chatsvcFile.is_relative_to(venv), f"{chatsvcFile} is not from {venv}")


class BuildRequirementsTests(PackagingTestCase):
    """The build requirements that pyproject.toml declares are enough."""

    def test_oldestSetuptools(self) -> None:
        """
        The oldest setuptools release series that C{[build-system] requires} allows (its newest
        patch release: C{>=77} means 77.*) builds the wheel, so the lower bound is not older than
        the features pyproject.toml uses (setuptools 68 to 76 reject C{license = "MIT"}).
        Downloads that setuptools from the package index.
        """
        buildSystem = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
        [oldest] = [
            match.group(1)
            for requirement in buildSystem["requires"]
            if (match := re.fullmatch(r"setuptools\s*>=\s*([0-9.]+)", requirement))
        ]
        python = self.freshEnvironment(dependencies=False)
        self.install(python, f"setuptools=={oldest}.*")
        version = self.runCommand(
            [python, "-I", "-c", "import setuptools; print(setuptools.__version__)"],
            cwd=python.parent,
        )
        self.assertTrue(version.startswith(f"{oldest}."), version)
        wheels = self.directory()
        tree = self.sourceTree()
        pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python]
        self.runCommand(
            [*pip, "wheel", "--no-build-isolation", "--no-deps", "--wheel-dir", wheels, tree],
            cwd=wheels,
            timeout=PIP_TIMEOUT,
        )
        self.assertEqual(len(list(wheels.glob("chatsvc-*.whl"))), 1)


class EditableTests(PackagingTestCase):
    """
    The editable install the README recommends, C{pip install -e . --config-settings
    editable_mode=compat}, makes the plugin visible to twistd anywhere.

    (setuptools' default editable mode does not: it installs an import hook that maps
    C{twisted.plugins} to the checkout, but twistd looks for plugin files in a
    C{twisted/plugins} directory of each C{sys.path} entry, and the checkout is not one, so
    C{twistd chatroom} fails with "Unknown command: chatroom" unless the current directory
    happens to be on C{sys.path}. Compat mode puts the checkout on C{sys.path} with a C{.pth}
    file.)
    """

    def test_compatMode(self) -> None:
        """
        After C{pip install -e} in compat mode into a fresh environment, its C{twistd chatroom
        --help} works from a directory outside the checkout, with chatsvc and the plugin imported
        from the source tree, and a module added to the tree afterwards is importable at once.
        """
        tree = self.sourceTree()
        python = self.freshEnvironment()
        self.install(python, "--config-settings", "editable_mode=compat", "-e", tree)
        elsewhere = self.directory()

        self.assertChatroomHelp(python, elsewhere)
        chatsvcFile, pluginFile = self.importedFrom(python, elsewhere)
        self.assertEqual(pluginFile, (tree / PLUGIN).resolve())
        self.assertEqual(chatsvcFile, (tree / "chatsvc" / "__init__.py").resolve())

        (tree / "chatsvc" / "editable_probe.py").write_text("ANSWER = 42\n")
        answer = self.runCommand(
            [python, "-I", "-c", "from chatsvc.editable_probe import ANSWER; print(ANSWER)"],
            cwd=elsewhere,
        )
        self.assertEqual(answer.strip(), "42")
