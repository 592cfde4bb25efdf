/**
 * The AstrID REST client of the dashboard: base URL, JWT pair in localStorage, one transparent
 * refresh on a 401, problem+json errors as `ApiError`, and authenticated blob/stream fetches
 * (images and SSE need the bearer header, which `<img>` and `EventSource` cannot send).
 */

import { reportDown, reportUp } from "./health";

export const API_PREFIX = "/api/v1";
const STORE = "astrid.session";
const BASE_KEY = "astrid.apiBase";

export type Role = "viewer" | "curator" | "expert" | "admin";
const RANK: Record<Role, number> = { viewer: 0, curator: 1, expert: 2, admin: 3 };

export interface Session {
  access: string;
  refresh: string;
  username: string;
  role: Role;
}

/** A refused request: HTTP status plus the problem+json title/detail. */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public body: unknown = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** True when `role` has at least the rights of `needed` (viewer < curator < expert < admin). */
export function atLeast(role: Role | undefined | null, needed: Role): boolean {
  return role != null && RANK[role] >= RANK[needed];
}

/**
 * Base URL of the API: `?api=` saved by the settings, else NEXT_PUBLIC_ASTRID_API at build time,
 * else the page's own origin (the dashboard served by `astrid serve`).
 */
export function apiBase(): string {
  if (typeof window !== "undefined") {
    const saved = window.localStorage.getItem(BASE_KEY);
    if (saved) return saved.replace(/\/$/, "");
  }
  return (process.env.NEXT_PUBLIC_ASTRID_API ?? "").replace(/\/$/, "");
}

export function setApiBase(url: string | null): void {
  if (url) window.localStorage.setItem(BASE_KEY, url);
  else window.localStorage.removeItem(BASE_KEY);
}

export function loadSession(): Session | null {
  if (typeof window === "undefined") return null;
  try {
    const raw = window.localStorage.getItem(STORE);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

type Listener = (s: Session | null) => void;
const listeners = new Set<Listener>();

export function onSession(fn: Listener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function saveSession(s: Session | null): void {
  if (s) window.localStorage.setItem(STORE, JSON.stringify(s));
  else window.localStorage.removeItem(STORE);
  listeners.forEach((fn) => fn(s));
}

async function problemOf(res: Response): Promise<ApiError> {
  let body: unknown = null;
  let message = `${res.status} ${res.statusText}`;
  try {
    body = await res.json();
    const p = body as { title?: string; detail?: string };
    message = p.detail || p.title || message;
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(res.status, message, body);
}

/** Log in with the OAuth2 password form; stores and returns the session. */
export async function login(username: string, password: string): Promise<Session> {
  const form = new URLSearchParams({ username, password });
  const res = await fetch(`${apiBase()}${API_PREFIX}/auth/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: form,
  });
  if (!res.ok) throw await problemOf(res);
  const tok = (await res.json()) as { access_token: string; refresh_token: string };
  const me = await fetch(`${apiBase()}${API_PREFIX}/auth/me`, {
    headers: { Authorization: `Bearer ${tok.access_token}` },
  });
  if (!me.ok) throw await problemOf(me);
  const user = (await me.json()) as { username: string; role: Role };
  const session: Session = {
    access: tok.access_token,
    refresh: tok.refresh_token,
    username: user.username,
    role: user.role,
  };
  saveSession(session);
  return session;
}

let refreshing: Promise<boolean> | null = null;

/** Rotate the refresh token once (shared by concurrent callers); false when it is refused. */
export function refreshSession(): Promise<boolean> {
  if (refreshing) return refreshing;
  const s = loadSession();
  if (!s) return Promise.resolve(false);
  refreshing = (async () => {
    try {
      const res = await fetch(`${apiBase()}${API_PREFIX}/auth/refresh`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: s.refresh }),
      });
      if (!res.ok) {
        if (res.status === 401) saveSession(null);
        return false;
      }
      const tok = (await res.json()) as { access_token: string; refresh_token: string };
      saveSession({ ...s, access: tok.access_token, refresh: tok.refresh_token });
      return true;
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

export async function logout(): Promise<void> {
  const s = loadSession();
  saveSession(null);
  if (s) {
    await fetch(`${apiBase()}${API_PREFIX}/auth/logout`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: s.refresh }),
    }).catch(() => undefined);
  }
}

/**
 * fetch() under the API prefix with the bearer token; on 401 refresh once and retry. Whether
 * the API could be reached at all goes to `health` (the banner of every page).
 */
export async function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  const go = async () => {
    const s = loadSession();
    const headers = new Headers(init.headers);
    if (s) headers.set("Authorization", `Bearer ${s.access}`);
    try {
      const res = await fetch(`${apiBase()}${API_PREFIX}${path}`, { ...init, headers });
      reportUp();
      return res;
    } catch (err) {
      reportDown(err instanceof Error ? err.message : String(err));
      throw err;
    }
  };
  let res = await go();
  if (res.status === 401 && loadSession() && (await refreshSession())) res = await go();
  return res;
}

/** True when the API answers its liveness probe (used while the banner is up). */
export async function probeApi(): Promise<boolean> {
  try {
    const res = await fetch(`${apiBase()}/health/live`, { cache: "no-store" });
    return res.ok;
  } catch {
    return false;
  }
}

/** JSON request; non-2xx answers raise `ApiError` with the problem's detail. */
export async function api<T>(path: string, init: RequestInit & { json?: unknown } = {}): Promise<T> {
  const { json, ...rest } = init;
  if (json !== undefined) {
    rest.body = JSON.stringify(json);
    rest.headers = { ...(rest.headers as Record<string, string>), "Content-Type": "application/json" };
  }
  const res = await apiFetch(path, rest);
  if (!res.ok) throw await problemOf(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** A list page of the API (`items` + `next_cursor`). */
export interface Page<T> {
  items: T[];
  limit: number;
  next_cursor: string | null;
}
