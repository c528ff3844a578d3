"""Tests for L{chatsvc.client.editor}: the input line's editing, history, completion and view."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.client.editor import LineEditor
from chatsvc.client.layout import displayWidth


def typed(text: str, cursor: int | None = None) -> LineEditor:
    editor = LineEditor()
    editor.insert(text)
    if cursor is not None:
        editor.cursor = cursor
    return editor


class EditingTests(SynchronousTestCase):
    def test_insertAtTheCursor(self) -> None:
        editor = typed("hllo", 1)
        editor.insert("e")
        self.assertEqual((editor.text, editor.cursor), ("hello", 2))

    def test_controlCharactersLeftOut(self) -> None:
        editor = typed("a\x1b[2Jb\x07c")
        self.assertEqual(editor.text, "a[2Jbc")

    def test_movingAndDeleting(self) -> None:
        editor = typed("hello world")
        editor.home()
        editor.delete()
        editor.end()
        editor.backspace()
        editor.left()
        editor.left()
        editor.right()
        self.assertEqual((editor.text, editor.cursor), ("ello worl", 8))
        editor.home()
        editor.backspace()  # nothing before the start
        editor.end()
        editor.delete()  # nothing after the end
        self.assertEqual(editor.text, "ello worl")

    def test_kills(self) -> None:
        """Ctrl-K, Ctrl-U and Ctrl-W."""
        editor = typed("one two  three", 9)
        editor.killToEnd()
        self.assertEqual(editor.text, "one two  ")
        editor.killWord()
        self.assertEqual((editor.text, editor.cursor), ("one ", 4))
        editor.insert("x y")
        editor.left()
        editor.killToStart()
        self.assertEqual((editor.text, editor.cursor), ("y", 0))

    def test_combiningMarksMoveWithTheirLetter(self) -> None:
        """A letter and the marks combined with it are one step of the cursor and one deletion."""
        editor = typed("ae\u0301b")
        editor.left()
        editor.left()
        self.assertEqual(editor.cursor, 1)
        editor.delete()
        self.assertEqual(editor.text, "ab")


class HistoryTests(SynchronousTestCase):
    def test_upAndDown(self) -> None:
        """Up recalls earlier lines; Down comes back to what was being typed."""
        editor = LineEditor()
        for line in ("first", "second"):
            editor.insert(line)
            self.assertEqual(editor.submit(), line)
        editor.insert("draft")
        editor.up()
        self.assertEqual((editor.text, editor.cursor), ("second", 6))
        editor.up()
        editor.up()  # no earlier line: stays
        self.assertEqual(editor.text, "first")
        editor.down()
        editor.down()
        self.assertEqual(editor.text, "draft")

    def test_notKept(self) -> None:
        """Empty lines, a line repeated, and passwords are not kept."""
        editor = LineEditor(historyKept=3)
        for line in ("a", "", "a", "b", "c", "d"):
            editor.insert(line)
            editor.submit()
        editor.secret = True
        editor.insert("sesame-open")
        editor.submit()
        self.assertEqual(editor.history, ["b", "c", "d"])


class CompletionTests(SynchronousTestCase):
    def editor(self, text: str, names: Sequence[str] = ("Alice", "Alfred", "Bob")) -> LineEditor:
        asked: list[tuple[str, bool]] = []
        self.asked = asked

        def complete(word: str, atStart: bool) -> list[str]:
            asked.append((word, atStart))
            if atStart and word.startswith("/"):
                return [c for c in ("/join", "/joined") if c.startswith(word)]
            return [n for n in names if n.lower().startswith(word.lower())]

        editor = LineEditor(complete)
        editor.insert(text)
        return editor

    def test_one(self) -> None:
        editor = self.editor("hi bo")
        editor.complete()
        self.assertEqual((editor.text, editor.cursor), ("hi Bob ", 7))
        self.assertEqual(self.asked, [("bo", False)])

    def test_commonBeginningThenCycle(self) -> None:
        editor = self.editor("/jo")
        editor.complete()
        self.assertEqual(editor.text, "/join")
        self.assertEqual(self.asked, [("/jo", True)])
        editor = self.editor("al")
        editor.complete()
        self.assertEqual(editor.text, "Alice")
        editor.complete()
        self.assertEqual(editor.text, "Alfred")
        editor.complete()
        self.assertEqual(editor.text, "Alice")

    def test_inTheMiddle(self) -> None:
        editor = self.editor("bo is here")
        editor.cursor = 2
        editor.complete()
        self.assertEqual((editor.text, editor.cursor), ("Bob is here", 3))

    def test_nothing(self) -> None:
        editor = self.editor("zz")
        editor.complete()
        self.assertEqual(editor.text, "zz")
        editor.secret = True
        editor.complete()
        self.assertEqual(self.asked, [("zz", True)])


class ViewTests(SynchronousTestCase):
    def test_fits(self) -> None:
        self.assertEqual(typed("hello", 2).view(20), ("hello", 2))

    def test_scrollsToTheCursor(self) -> None:
        editor = typed("abcdefghij")
        self.assertEqual(editor.view(5), ("ghij", 4))
        editor.home()
        self.assertEqual(editor.view(5), ("abcde", 0))

    def test_wideCharacters(self) -> None:
        """Wide characters take two columns; the cursor column counts them so."""
        editor = typed("李雷ab")
        self.assertEqual((displayWidth("李"), displayWidth("a"), displayWidth("\u0301")), (2, 1, 0))
        self.assertEqual(editor.view(20), ("李雷ab", 6))
        self.assertEqual(editor.view(4), ("ab", 2))

    def test_password(self) -> None:
        editor = typed("sesame-open")
        editor.secret = True
        self.assertEqual(editor.view(20), ("", 0))


class PasswordCommandTests(SynchronousTestCase):
    def test_maskedAndNotKept(self) -> None:
        """/register and /password show their arguments masked, and are never recalled."""
        editor = typed("/register sesame-open")
        self.assertEqual(editor.view(40), ("/register ***********", 21))
        editor.submit()
        editor.insert("/PASSWORD old-one new-one")
        self.assertEqual(editor.view(40)[0], "/PASSWORD " + "*" * 15)
        editor.submit()
        editor.insert("/join games")
        editor.submit()
        self.assertEqual(editor.history, ["/join games"])
