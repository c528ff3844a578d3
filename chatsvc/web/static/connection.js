// The WebSocket to /ws: JSON in and out, and the backoff between reconnection attempts.
// What to do on each message, and whether to reconnect at all, is app.js's business.

export function socketUrl() {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
}

/** Exponential backoff: about 1 s, 2 s, 4 s ... up to 30 s, each with ±20 % jitter. */
export class Backoff {
  constructor(first = 1000, max = 30000) {
    this.first = first;
    this.max = max;
    this.attempt = 0;
  }

  next() {
    const base = Math.min(this.max, this.first * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(Math.min(this.max, base * (0.8 + Math.random() * 0.4)));
  }

  reset() {
    this.attempt = 0;
  }
}

export class Connection {
  /** handlers: onopen(), onmessage(object), onclose({code, reason, wasClean}). */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.socket = null;
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  get active() {
    return this.socket !== null;
  }

  connect() {
    if (this.socket) return;
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      queueMicrotask(() => this.handlers.onclose({ code: 1006, reason: String(error), wasClean: false }));
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (this.socket === socket) this.handlers.onopen();
    });
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket || typeof event.data !== "string") return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message && typeof message === "object" && typeof message.type === "string") {
        this.handlers.onmessage(message);
      }
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.handlers.onclose({ code: event.code, reason: event.reason, wasClean: event.wasClean });
    });
  }

  /** Send one message; false if the socket is not open (nothing was sent). */
  send(message) {
    if (!this.open) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  /** Close and forget the socket now; no onclose follows. */
  drop(code = 1000, reason = "") {
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      try {
        socket.close(code, reason);
      } catch {
        socket.close();
      }
    }
  }
}
