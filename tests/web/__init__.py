"""
Tests of the browser door: the chat page and its WebSocket, driven in Debian's chromium.
"""
