"""C{python -m chatsvc.client NICK ...}: see L{chatsvc.client}."""

from chatsvc.client import main

main()
