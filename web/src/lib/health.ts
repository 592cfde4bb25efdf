/**
 * Is the API reachable? Every API call reports what happened (`apiFetch` calls `reportDown` when
 * fetch() itself fails, `reportUp` on any HTTP answer); while it is down a probe of
 * `/health/live` runs every `intervalMs` until it answers, and the banner of every page
 * (components/ApiBanner) listens here. Pages keep what they could not send (the vote outbox) and
 * resend it when `onHealth` reports the API back.
 */

export interface Health {
  up: boolean;
  /** Why it is down (the fetch error), null while up. */
  reason: string | null;
  /** When it went down (ms since epoch), null while up. */
  since: number | null;
  /** Probes tried since it went down. */
  attempts: number;
}

type Listener = (h: Health) => void;

const UP: Health = { up: true, reason: null, since: null, attempts: 0 };
let state: Health = UP;
const listeners = new Set<Listener>();

export function health(): Health {
  return state;
}

export function onHealth(fn: Listener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function set(next: Health): void {
  state = next;
  listeners.forEach((fn) => fn(next));
}

/** A request could not reach the API. */
export function reportDown(reason: string, now: number = Date.now()): void {
  if (state.up) set({ up: false, reason, since: now, attempts: 0 });
  else if (state.reason !== reason) set({ ...state, reason });
}

/** The API answered (any status: it is there). */
export function reportUp(): void {
  if (!state.up) set(UP);
}

/** Seconds until the next probe: 2, 4, 8 … capped at `maxS`. */
export function backoffS(attempts: number, maxS = 15): number {
  return Math.min(maxS, 2 ** Math.min(attempts + 1, 10));
}

/**
 * While down, call `probe` after each back-off delay until it resolves true (then `reportUp`).
 * Returns a stop function. `schedule` is setTimeout (injectable for tests).
 */
export function startProbe(
  probe: () => Promise<boolean>,
  schedule: (fn: () => void, ms: number) => unknown = (fn, ms) => setTimeout(fn, ms),
): () => void {
  let stopped = false;
  let running = false;
  const tick = async () => {
    if (stopped || state.up || running) return;
    running = true;
    let ok = false;
    try {
      ok = await probe();
    } catch {
      ok = false;
    }
    running = false;
    if (stopped) return;
    if (ok) reportUp();
    else {
      set({ ...state, attempts: state.attempts + 1 });
      schedule(tick, backoffS(state.attempts) * 1000);
    }
  };
  const off = onHealth((h) => {
    if (!h.up && h.attempts === 0) schedule(tick, backoffS(0) * 1000);
  });
  if (!state.up) schedule(tick, backoffS(state.attempts) * 1000);
  return () => {
    stopped = true;
    off();
  };
}
