/**
 * Server-Sent Events over fetch(): `EventSource` cannot send the bearer header, so the live
 * feed reads the stream itself. `SseParser` is the pure frame parser (unit-tested);
 * `subscribe` reconnects with `Last-Event-ID` after a drop.
 */

import { apiFetch } from "./api";

export interface SseEvent {
  id: number | null;
  event: string;
  data: unknown;
}

export class SseParser {
  private buf = "";
  private frame: Record<string, string> = {};

  /** Feed a chunk of text; returns the events completed by it. */
  push(chunk: string): SseEvent[] {
    this.buf += chunk;
    const out: SseEvent[] = [];
    let nl: number;
    while ((nl = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, "");
      this.buf = this.buf.slice(nl + 1);
      if (line === "") {
        if (this.frame.data !== undefined) {
          let data: unknown = this.frame.data;
          try {
            data = JSON.parse(this.frame.data);
          } catch {
            /* plain text data */
          }
          out.push({ id: this.frame.id ? Number(this.frame.id) : null, event: this.frame.event ?? "message", data });
        }
        this.frame = {};
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const key = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        this.frame[key] = key === "data" && this.frame.data !== undefined ? `${this.frame.data}\n${value}` : value;
      }
    }
    return out;
  }
}

export type LinkState = "connecting" | "live" | "down";

/** Follow /stream/events until `signal` aborts; calls `onState` as the link goes up and down. */
export async function subscribe(
  onEvent: (e: SseEvent) => void,
  onState: (s: LinkState) => void,
  signal: AbortSignal,
  types?: string,
): Promise<void> {
  let last: number | null = null;
  let delay = 1000;
  while (!signal.aborted) {
    onState("connecting");
    try {
      const q = new URLSearchParams();
      if (types) q.set("types", types);
      if (last !== null) q.set("last_event_id", String(last));
      const res = await apiFetch(`/stream/events?${q}`, { signal, headers: { Accept: "text/event-stream" } });
      if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
      onState("live");
      delay = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new SseParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const e of parser.push(value)) {
          if (e.id !== null) last = e.id;
          onEvent(e);
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    onState("down");
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
}
