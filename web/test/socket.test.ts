import { describe, expect, it } from "vitest";
import type { TokenSource } from "../src/api/client";
import { ChatSocket, type SocketStatus, type WireSocket } from "../src/net/socket";
import { FakeClock, flush } from "./fixtures";

class FakeWire implements WireSocket {
  readyState = 0;
  sent: string[] = [];
  onopen: WireSocket["onopen"] = null;
  onmessage: WireSocket["onmessage"] = null;
  onclose: WireSocket["onclose"] = null;
  onerror: WireSocket["onerror"] = null;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.readyState = 3;
  }
  hello() {
    this.readyState = 1;
    this.onmessage?.({ data: JSON.stringify({ type: "hello", user_id: "u", channels: [], relay: "r1", heartbeat_s: 20 }) } as MessageEvent);
  }
  frame(f: object) {
    this.onmessage?.({ data: JSON.stringify(f) } as MessageEvent);
  }
  drop(code: number, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason } as CloseEvent);
  }
}

function setup(online: () => boolean = () => true) {
  const clock = new FakeClock();
  const wires: FakeWire[] = [];
  const statuses: SocketStatus[] = [];
  const frames: object[] = [];
  const fatal: string[] = [];
  let n = 0;
  const tokens: TokenSource & { renewals: number } = {
    renewals: 0,
    token: async () => `t${n}`,
    async renew() {
      this.renewals += 1;
      return `t${++n}`;
    },
  };
  const socket = new ChatSocket(
    "ws://h/v1/ws",
    tokens,
    { hello: () => undefined, frame: (f) => frames.push(f), status: (s) => statuses.push(s), fatal: (r) => fatal.push(r) },
    (url) => {
      const w = new FakeWire(url);
      wires.push(w);
      return w;
    },
    clock,
    () => 0.5,
    online,
  );
  const details: string[] = [];
  const statusOf = socket as unknown as { handlers: { status: (s: SocketStatus, d: string) => void } };
  const report = statusOf.handlers.status;
  statusOf.handlers.status = (st, d) => {
    details.push(d);
    report(st, d);
  };
  return { clock, wires, statuses, frames, fatal, tokens, socket, details };
}

describe("ChatSocket", () => {
  it("puts the access token in ?token= and delivers frames only after hello", async () => {
    const s = setup();
    s.socket.start();
    await flush();
    expect(s.wires[0]?.url).toBe("ws://h/v1/ws?token=t0");
    s.wires[0]?.frame({ type: "typing" });
    expect(s.socket.send({ a: 1 })).toBe(false);
    s.wires[0]?.hello();
    s.wires[0]?.frame({ type: "typing" });
    expect(s.frames).toEqual([{ type: "typing" }]);
    expect(s.socket.send({ a: 1 })).toBe(true);
    expect(s.statuses).toEqual(["connecting", "open"]);
  });

  it("drops a socket that looks open when the browser goes offline, says so, and queues sends", async () => {
    let online = true;
    const s = setup(() => online);
    s.socket.start();
    await flush();
    s.wires[0]?.hello();
    online = false;
    s.socket.offline();
    expect(s.wires[0]?.readyState).toBe(3);
    expect(s.statuses.at(-1)).toBe("reconnecting");
    expect(s.details.at(-1)).toBe("this device is offline");
    expect(s.socket.send({ a: 1 })).toBe(false);
    // Back online: no waiting out the backoff.
    online = true;
    s.socket.nudge();
    await flush();
    s.wires[1]?.hello();
    expect(s.statuses.at(-1)).toBe("open");
    expect(s.socket.send({ a: 1 })).toBe(true);
  });

  it("drops a greeted socket that answers nothing and connects again, once per connection", async () => {
    const s = setup();
    s.socket.start();
    await flush();
    s.wires[0]?.hello();
    s.socket.reconnect("the server did not answer");
    s.socket.reconnect("the server did not answer"); // another send on the same dead link
    expect(s.wires[0]?.readyState).toBe(3);
    expect(s.details.at(-1)).toBe("the server did not answer");
    s.clock.advance(10_000);
    await flush();
    expect(s.wires).toHaveLength(2);
    s.wires[1]?.hello();
    expect(s.statuses.at(-1)).toBe("open");
  });

  it("reconnects after 1012, 1013 and 1006 with growing, jittered delays", async () => {
    const s = setup();
    s.socket.start();
    await flush();
    s.wires[0]?.hello();
    s.wires[0]?.drop(1012, "relay restarting");
    expect(s.statuses.at(-1)).toBe("reconnecting");
    expect(s.clock.pending()).toEqual([250]);
    s.clock.advance(250);
    await flush();
    s.wires[1]?.drop(1006);
    expect(s.clock.pending()).toEqual([500]);
    s.clock.advance(500);
    await flush();
    s.wires[2]?.drop(1013);
    expect(s.clock.pending()).toEqual([1000]);
    s.clock.advance(1000);
    await flush();
    s.wires[3]?.hello();
    expect(s.wires).toHaveLength(4);
    expect(s.statuses.at(-1)).toBe("open");
    // A greeting resets the backoff.
    s.wires[3]?.drop(1012);
    expect(s.clock.pending()).toEqual([250]);
  });

  it("renews the token at once on 1008 token expired", async () => {
    const s = setup();
    s.socket.start();
    await flush();
    s.wires[0]?.hello();
    s.wires[0]?.drop(1008, "token expired");
    await flush();
    expect(s.tokens.renewals).toBe(1);
    expect(s.wires[1]?.url).toBe("ws://h/v1/ws?token=t1");
  });

  it("backs off without renewing the token when closed for sending past the rate limit", async () => {
    const s = setup();
    s.socket.start();
    await flush();
    s.wires[0]?.hello();
    s.wires[0]?.drop(1008, "too many frames over the rate limit");
    await flush();
    expect(s.tokens.renewals).toBe(0);
    expect(s.wires).toHaveLength(1);
    expect(s.clock.pending()).toEqual([250]);
    s.clock.advance(250);
    await flush();
    expect(s.wires).toHaveLength(2);
    expect(s.tokens.renewals).toBe(0);
  });

  it("stops for good on 1008 account disabled", async () => {
    const s = setup();
    s.socket.start();
    await flush();
    s.wires[0]?.hello();
    s.wires[0]?.drop(1008, "account disabled");
    await flush();
    expect(s.fatal).toEqual(["This account was disabled."]);
    expect(s.clock.pending()).toEqual([]);
    expect(s.wires).toHaveLength(1);
  });

  it("renews the token when handshakes keep failing before any hello", async () => {
    const s = setup();
    s.socket.start();
    await flush();
    s.wires[0]?.drop(1006);
    s.clock.advance(250);
    await flush();
    s.wires[1]?.drop(1006);
    s.clock.advance(500);
    await flush();
    expect(s.tokens.renewals).toBe(1);
  });

  it("does not reconnect after stop", async () => {
    const s = setup();
    s.socket.start();
    await flush();
    s.wires[0]?.hello();
    s.socket.stop();
    s.wires[0]?.drop(1006);
    expect(s.clock.pending()).toEqual([]);
    expect(s.statuses.at(-1)).toBe("stopped");
  });

  it("skips the rest of the backoff when nudged (the network is back)", async () => {
    const s = setup();
    s.socket.start();
    await flush();
    s.wires[0]?.hello();
    s.wires[0]?.drop(1006);
    s.wires.length = 0;
    s.socket.nudge();
    await flush();
    expect(s.wires).toHaveLength(1);
    expect(s.clock.pending()).toEqual([]);
    // Nothing to skip while connected.
    s.wires[0]?.hello();
    s.socket.nudge();
    await flush();
    expect(s.wires).toHaveLength(1);
  });
});
