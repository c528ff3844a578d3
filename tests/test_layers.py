"""
The layers' own rules that the import contract in pyproject.toml cannot state: the core may use
Twisted's interfaces, Deferreds and Failures (time and results are passed in), but none of its
protocols, transports or reactors.
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import chatsvc.chat

ALLOWED_TWISTED = {
    "twisted.internet.interfaces",
    "twisted.internet.defer",
    "twisted.python.failure",
}
"""What of Twisted the core may import: interfaces, Deferreds and the failures they carry."""


def importsOf(path: Path) -> set[str]:
    """Every module C{path} imports, by name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


class CoreImportTests(SynchronousTestCase):
    """What the core's modules import."""

    def test_onlyTwistedInterfacesAndDeferreds(self) -> None:
        """Every module of L{chatsvc.chat} imports of Twisted only its interfaces and Deferreds."""
        package = Path(chatsvc.chat.__file__).parent
        modules = sorted(package.glob("*.py"))
        self.assertGreater(len(modules), 5)
        for module in modules:
            with self.subTest(module=module.name):
                twisted = {name for name in importsOf(module) if name.split(".")[0] == "twisted"}
                self.assertLessEqual(twisted, ALLOWED_TWISTED)

    def test_checkSeesAReactorImport(self) -> None:
        """The check above would see a module importing the reactor."""
        source = Path(self.mktemp())
        source.write_text("from twisted.internet import reactor\n", encoding="utf-8")
        self.assertEqual(importsOf(source), {"twisted.internet"})
        self.assertNotIn("twisted.internet", ALLOWED_TWISTED)
