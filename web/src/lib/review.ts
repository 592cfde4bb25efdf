/**
 * The expert actions of the object page and the admin's user forms: which discovery moves the
 * API allows from a status (mirrors astrid.domain.review.change_discovery), and the request
 * bodies built from the forms, refused here with the field named before anything is sent.
 */
import type { Role } from "./api";

export const DISCOVERY_ORDER = ["new", "follow_up_requested", "confirmed", "reported"] as const;
export type DiscoveryStatus = (typeof DISCOVERY_ORDER)[number] | "retracted";

export const STATUS_NAMES: Record<DiscoveryStatus, string> = {
  new: "new",
  follow_up_requested: "follow-up requested",
  confirmed: "confirmed",
  reported: "reported",
  retracted: "retracted",
};

/** Statuses a discovery may move to: any later step (steps may be skipped), or retracted. */
export function nextStatuses(current: string): DiscoveryStatus[] {
  const i = DISCOVERY_ORDER.indexOf(current as (typeof DISCOVERY_ORDER)[number]);
  if (i < 0) return []; // retracted (or unknown): final
  const later: DiscoveryStatus[] = [...DISCOVERY_ORDER.slice(i + 1)];
  return current === "reported" ? later : [...later, "retracted"];
}

/** A form value refused before sending: `field` is the API's name of it. */
export class FormError extends Error {
  constructor(public field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "FormError";
  }
}

const MAX_TEXT = 10_000;

function text(field: string, v: string): string | undefined {
  const t = v.trim();
  if (!t) return undefined;
  if (t.length > MAX_TEXT) throw new FormError(field, `is ${t.length} characters long; the limit is ${MAX_TEXT}`);
  return t;
}

function importance(v: string): number | undefined {
  if (v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 5) throw new FormError("importance", "must be a whole number from 1 to 5");
  return n;
}

export interface ReviewForm {
  verdict: string;
  importance: string;
  classification: string;
  notes: string;
}

/** Body of POST /objects/{id}/reviews. */
export function reviewBody(f: ReviewForm): Record<string, unknown> {
  if (f.verdict !== "confirm" && f.verdict !== "dispute") throw new FormError("verdict", "choose confirm or dispute");
  const body: Record<string, unknown> = { verdict: f.verdict };
  const imp = importance(f.importance);
  if (imp !== undefined) body.importance = imp;
  const cls = text("classification", f.classification);
  if (cls !== undefined) body.classification = cls;
  const notes = text("notes", f.notes);
  if (notes !== undefined) body.notes = notes;
  return body;
}

/** Body of POST /objects/{id}/discovery. */
export function discoveryBody(f: { name: string; importance: string; notes: string }): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const name = text("name", f.name);
  if (name !== undefined) {
    if (name.length > 64) throw new FormError("name", "is longer than 64 characters");
    body.name = name;
  }
  const imp = importance(f.importance);
  if (imp !== undefined) body.importance = imp;
  const notes = text("notes", f.notes);
  if (notes !== undefined) body.notes = notes;
  return body;
}

/** Body of PATCH /discoveries/{id}; the move must be one `nextStatuses` allows. */
export function moveBody(current: string, status: string, note: string): Record<string, unknown> {
  if (!nextStatuses(current).includes(status as DiscoveryStatus)) {
    throw new FormError("status", `a ${current} discovery cannot become ${status || "(none)"}`);
  }
  const body: Record<string, unknown> = { status };
  const n = text("note", note);
  if (n !== undefined) body.note = n;
  return body;
}

export const ROLES: Role[] = ["viewer", "curator", "expert", "admin"];

/** Body of POST /users (admin). */
export function newUserBody(f: { username: string; password: string; role: string; email: string }): Record<string, unknown> {
  const username = f.username.trim();
  if (!username) throw new FormError("username", "must not be empty");
  if (username.length > 128) throw new FormError("username", "is longer than 128 characters");
  if (f.password.length < 8) throw new FormError("password", "must be at least 8 characters");
  if (!ROLES.includes(f.role as Role)) throw new FormError("role", `must be one of ${ROLES.join(", ")}`);
  const body: Record<string, unknown> = { username, password: f.password, role: f.role };
  const email = f.email.trim();
  if (email) {
    if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) throw new FormError("email", "is not an email address");
    body.email = email;
  }
  return body;
}

/** Body of POST /auth/api-keys. */
export function apiKeyBody(f: { name: string; write: boolean; days: string }): Record<string, unknown> {
  const name = f.name.trim();
  if (!name) throw new FormError("name", "must not be empty");
  const body: Record<string, unknown> = { name, scopes: f.write ? ["read", "write"] : ["read"] };
  if (f.days.trim()) {
    const d = Number(f.days);
    if (!Number.isFinite(d) || d <= 0 || d > 3650) throw new FormError("expires_in_days", "must be between 0 and 3650 days");
    body.expires_in_days = d;
  }
  return body;
}
