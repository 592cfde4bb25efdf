import { describe, expect, it } from "vitest";
import { KEEP_RUNS, RESULTS_KEY, ageLabel, degradedReasons, exportDocument, latestByCheck, loadResults, rebucket, saveResults, type KV, type StoredResult } from "./ops";

const NOW = Date.parse("2026-11-30T12:00:00Z");
const iso = (msAgo: number) => new Date(NOW - msAgo).toISOString();

class Mem implements KV {
  data = new Map<string, string>();
  getItem(k: string) { return this.data.get(k) ?? null; }
  setItem(k: string, v: string) { this.data.set(k, v); }
  removeItem(k: string) { this.data.delete(k); }
}

const result = (name: string, ok: boolean, at: string): StoredResult => ({ name, ok, status: ok ? "ok" : "error: x", ms: 1, details: null, at, log: [] });

describe("trend bucketing", () => {
  it("spreads 5-minute buckets over the window's bins and drops older ones", () => {
    const buckets = [
      { start: iso(2 * 60_000), processed: 3, failed: 1 }, // last bin of 1 h
      { start: iso(59 * 60_000), processed: 2, failed: 0 }, // first bin of 1 h
      { start: iso(2 * 3600_000), processed: 5, failed: 2 }, // only in 6 h / 24 h
      { start: iso(30 * 3600_000), processed: 9, failed: 9 }, // outside every window
    ];
    const hour = rebucket(buckets, 3600, 12, NOW);
    expect(hour).toHaveLength(12);
    expect(hour[11]).toMatchObject({ processed: 3, failed: 1 });
    expect(hour[0]).toMatchObject({ processed: 2, failed: 0 });
    expect(hour.reduce((a, b) => a + b.processed, 0)).toBe(5);
    const six = rebucket(buckets, 6 * 3600, 12, NOW);
    expect(six.reduce((a, b) => a + b.processed, 0)).toBe(10);
    expect(six[8]).toMatchObject({ processed: 5, failed: 2 }); // 2 h ago: (6 h - 2 h) / 30 min = bin 8
    const day = rebucket(buckets, 86400, 24, NOW);
    expect(day.reduce((a, b) => a + b.failed, 0)).toBe(3);
    expect(day[0].start).toBe(NOW - 86400_000);
  });

  it("ignores unparsable and future buckets", () => {
    const bins = rebucket([{ start: "nonsense", processed: 1, failed: 1 }, { start: iso(-60_000), processed: 1, failed: 0 }], 3600, 12, NOW);
    expect(bins.every((b) => b.processed === 0 && b.failed === 0)).toBe(true);
  });
});

describe("banner and labels", () => {
  it("names lost workers, failed checks and an unready service", () => {
    expect(degradedReasons([{ id: "a", host: "h", pid: 1, state: "alive" }], [{ name: "database", ok: true, status: "ok" }], "ok")).toEqual([]);
    const r = degradedReasons([{ id: "a", host: "h", pid: 7, state: "lost" }, { id: "b", host: "h", pid: 8, state: "stopped" }], [{ name: "broker", ok: false, status: "error: refused" }], "unavailable");
    expect(r).toEqual(["worker h:7 is lost (no heartbeat)", "check broker failed: error: refused", "/health/ready says unavailable"]);
  });
  it("formats heartbeat ages", () => {
    expect(ageLabel(4.4)).toBe("4 s ago");
    expect(ageLabel(180)).toBe("3 min ago");
    expect(ageLabel(7200)).toBe("2 h ago");
  });
});

describe("diagnostics results in localStorage", () => {
  it("keeps the newest runs per check, survives a reload and exports JSON", () => {
    const store = new Mem();
    expect(loadResults(store)).toEqual([]);
    saveResults(store, [result("database", true, "t1"), result("smoke", false, "t1")]);
    saveResults(store, [result("smoke", true, "t2")]);
    const back = loadResults(new Proxy(store, {})); // read back from the stored string
    expect(back.map((r) => `${r.name}@${r.at}`)).toEqual(["smoke@t2", "database@t1", "smoke@t1"]);
    const latest = latestByCheck(back, ["database", "smoke", "mlflow"]);
    expect(latest.smoke?.ok).toBe(true);
    expect(latest.mlflow).toBeUndefined();
    for (let i = 0; i < KEEP_RUNS + 5; i++) saveResults(store, [result("database", true, `x${i}`)]);
    expect(loadResults(store).filter((r) => r.name === "database")).toHaveLength(KEEP_RUNS);
    const doc = JSON.parse(exportDocument(loadResults(store), "2026-11-30T12:00:00Z"));
    expect(doc.exported_at).toBe("2026-11-30T12:00:00Z");
    expect(doc.results[0].at).toBe(`x${KEEP_RUNS + 4}`);
  });
  it("reads a corrupt store as empty", () => {
    const store = new Mem();
    store.setItem(RESULTS_KEY, "{not json");
    expect(loadResults(store)).toEqual([]);
    store.setItem(RESULTS_KEY, '{"a":1}');
    expect(loadResults(store)).toEqual([]);
  });
});
