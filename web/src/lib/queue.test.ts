import { describe, expect, it } from "vitest";
import * as Q from "./queue";

const item = (id: number): Q.ScanItem => Q.normalizeItem({ detection_id: id, ra: 10, dec: -5, score: 0.5 });

function loaded(n: number, cursor: string | null = "next"): Q.QueueState {
  return Q.appendPage(Q.emptyQueue(), Array.from({ length: n }, (_, i) => item(i + 1)), cursor);
}

describe("queue cursor", () => {
  it("moves within bounds", () => {
    let q = loaded(3);
    q = Q.move(q, -1);
    expect(q.index).toBe(0);
    q = Q.move(Q.move(Q.move(Q.move(q, 1), 1), 1), 1);
    expect(q.index).toBe(2);
    expect(Q.current(q)?.id).toBe(3);
  });

  it("appends pages without duplicates and knows when it is exhausted", () => {
    let q = loaded(3);
    q = Q.appendPage(q, [item(3), item(4)], null);
    expect(q.items.map((i) => i.id)).toEqual([1, 2, 3, 4]);
    expect(q.exhausted).toBe(true);
    expect(Q.needsMore(q)).toBe(false);
  });

  it("asks for more near the end and lists the next items to prefetch", () => {
    const q = Q.move(loaded(10), 5);
    expect(Q.needsMore(q, 5)).toBe(true);
    expect(Q.needsMore(Q.move(loaded(20), 2), 5)).toBe(false);
    expect(Q.upcoming(q, 2).map((i) => i.id)).toEqual([7, 8]);
  });

  it("is empty-safe", () => {
    const q = Q.move(Q.emptyQueue(), 1);
    expect(Q.current(q)).toBeNull();
    expect(Q.undoLast(q)[1]).toBeNull();
  });
});

describe("optimistic votes", () => {
  it("applies a vote at once and advances", () => {
    const q = Q.castVote(loaded(3), 1, "real");
    expect(q.votes[1]).toMatchObject({ label: "real", state: "pending" });
    expect(Q.current(q)?.id).toBe(2);
    expect(Q.tally(q)).toEqual({ pending: 1, stored: 0, failed: 0 });
  });

  it("confirms a stored vote", () => {
    const q = Q.confirmVote(Q.castVote(loaded(3), 1, "bogus"), 1);
    expect(q.votes[1].state).toBe("stored");
  });

  it("rolls a refused vote back visibly and refocuses its candidate", () => {
    let q = Q.castVote(loaded(3), 1, "real", { classification: "transient/supernova" });
    q = Q.castVote(q, 2, "bogus");
    q = Q.rollbackVote(q, 1, "403 forbidden");
    expect(q.votes[1]).toMatchObject({ state: "failed", error: "403 forbidden" });
    expect(Q.current(q)?.id).toBe(1);
    expect(q.undo).toEqual([2]);
    expect(Q.tally(q)).toEqual({ pending: 1, stored: 0, failed: 1 });
  });

  it("undoes the last vote and goes back to it", () => {
    let q = Q.castVote(Q.castVote(loaded(4), 1, "real"), 2, "skip");
    const [after, id] = Q.undoLast(q);
    q = after;
    expect(id).toBe(2);
    expect(q.votes[2]).toBeUndefined();
    expect(q.votes[1]).toBeDefined();
    expect(Q.current(q)?.id).toBe(2);
  });

  it("ignores confirm/rollback of unknown votes", () => {
    const q = loaded(2);
    expect(Q.confirmVote(q, 9)).toBe(q);
    expect(Q.rollbackVote(q, 9, "x")).toBe(q);
  });

  it("toggles the bulk selection", () => {
    let q = Q.toggleSelect(loaded(2), 1);
    q = Q.toggleSelect(q, 2);
    q = Q.toggleSelect(q, 1);
    expect(q.selected).toEqual([2]);
  });
});

describe("normalizeItem", () => {
  it("reads a scanning-queue item", () => {
    const it = Q.normalizeItem({
      detection_id: 7, ra: 1.5, dec: 2.5, mjd: 60000.5, score: 0.9, snr: 12, mag: 18.2,
      cutouts: { science: "/api/v1/detections/7/cutouts/science", reference: null, difference: "/api/v1/detections/7/cutouts/difference" },
      nearest_star: { name: "PS1 123", separation_arcsec: 1.234, mag: 17.1 },
      object: { id: 3, n_detections: 4, peak_mag: 17.5 },
      annotations: [{ kind: "star", name: "Gaia 9", separation_arcsec: 2.0 }],
    });
    expect(it.id).toBe(7);
    expect(it.cutouts).toEqual([
      { label: "science", url: "/detections/7/cutouts/science" },
      { label: "reference", url: "" },
      { label: "difference", url: "/detections/7/cutouts/difference" },
    ]);
    expect(it.nearestStar).toBe("PS1 123 · 1.234″ · 17.1 mag");
    expect(it.objectId).toBe(3);
    expect(it.annotations[0]).toEqual(["star", "Gaia 9 · 2″"]);
  });

  it("reads a bare detection with alert cutout keys", () => {
    const it = Q.normalizeItem({ id: 5, ra: 0, dec: 0, confidence: 0.2, cutout_keys: { science: "a", reference: "b", difference: "c" } });
    expect(it.score).toBeCloseTo(0.2, 6);
    expect(it.cutouts.map((c) => c.url)).toEqual(["/detections/5/cutouts/science", "/detections/5/cutouts/reference", "/detections/5/cutouts/difference"]);
  });
});
