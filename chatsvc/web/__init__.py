"""The browser door: the chat page, its assets and the WebSocket at /ws, in one twisted.web Site."""
