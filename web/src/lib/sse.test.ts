import { describe, expect, it } from "vitest";
import { SseParser } from "./sse";

describe("SSE parser", () => {
  it("parses frames split across chunks and skips comments", () => {
    const p = new SseParser();
    expect(p.push("retry: 3000\n: stream from event 4\n\nid: 5\nevent: detection.created\nda")).toEqual([]);
    const got = p.push('ta: {"id":5,"type":"detection.created"}\n\n: heartbeat\n\n');
    expect(got).toEqual([{ id: 5, event: "detection.created", data: { id: 5, type: "detection.created" } }]);
  });

  it("joins multi-line data and handles CRLF", () => {
    const p = new SseParser();
    const got = p.push("data: a\r\ndata: b\r\n\r\n");
    expect(got).toEqual([{ id: null, event: "message", data: "a\nb" }]);
  });
});
