import { beforeEach, describe, expect, it } from "vitest";
import { backoffS, health, onHealth, reportDown, reportUp, startProbe } from "./health";

describe("API reachability", () => {
  beforeEach(() => reportUp());

  it("goes down once, keeps the first time, comes back on any answer", () => {
    const seen: boolean[] = [];
    const off = onHealth((h) => seen.push(h.up));
    reportDown("Failed to fetch", 1000);
    reportDown("Failed to fetch", 2000);
    expect(health()).toMatchObject({ up: false, since: 1000, reason: "Failed to fetch" });
    reportDown("NetworkError", 3000);
    expect(health()).toMatchObject({ up: false, since: 1000, reason: "NetworkError" });
    reportUp();
    reportUp();
    expect(health().up).toBe(true);
    expect(seen).toEqual([false, false, true]);
    off();
  });

  it("backs off 2, 4, 8 s up to the cap", () => {
    expect([0, 1, 2, 3, 4, 10].map((a) => backoffS(a))).toEqual([2, 4, 8, 15, 15, 15]);
    expect(backoffS(1, 3)).toBe(3);
  });

  it("probes while down until the API answers, then reports it up", async () => {
    const delays: number[] = [];
    const queue: (() => void)[] = [];
    const answers = [false, false, true];
    let probes = 0;
    const stop = startProbe(
      async () => answers[probes++],
      (fn, ms) => { delays.push(ms); queue.push(fn); },
    );
    expect(queue).toHaveLength(0); // nothing to do while up
    reportDown("Failed to fetch");
    while (queue.length) {
      await queue.shift()!();
      await Promise.resolve();
    }
    expect(probes).toBe(3);
    expect(delays).toEqual([2000, 4000, 8000]);
    expect(health().up).toBe(true);
    stop();
    reportDown("again");
    expect(queue).toHaveLength(0); // stopped: no more probes
  });

  it("a throwing probe counts as down", async () => {
    const queue: (() => void)[] = [];
    reportDown("x");
    const stop = startProbe(async () => { throw new Error("boom"); }, (fn) => queue.push(fn));
    await queue.shift()!();
    expect(health()).toMatchObject({ up: false, attempts: 1 });
    expect(queue).toHaveLength(1);
    stop();
  });
});
