import { describe, expect, it } from "vitest";
import { apiKeyBody, discoveryBody, FormError, moveBody, newUserBody, nextStatuses, reviewBody } from "./review";

describe("discovery moves", () => {
  it("goes forward (skipping allowed) or retracts; reported and retracted are final", () => {
    expect(nextStatuses("new")).toEqual(["follow_up_requested", "confirmed", "reported", "retracted"]);
    expect(nextStatuses("confirmed")).toEqual(["reported", "retracted"]);
    expect(nextStatuses("reported")).toEqual([]);
    expect(nextStatuses("retracted")).toEqual([]);
  });

  it("refuses a move the API would refuse, naming the field", () => {
    expect(moveBody("new", "confirmed", " asked for spectra ")).toEqual({ status: "confirmed", note: "asked for spectra" });
    expect(() => moveBody("confirmed", "new", "")).toThrow(FormError);
    expect(() => moveBody("reported", "retracted", "")).toThrow("status: a reported discovery cannot become retracted");
  });
});

describe("review and discovery bodies", () => {
  it("keeps only what was filled in", () => {
    expect(reviewBody({ verdict: "confirm", importance: "4", classification: " transient/supernova ", notes: "" }))
      .toEqual({ verdict: "confirm", importance: 4, classification: "transient/supernova" });
    expect(discoveryBody({ name: "", importance: "", notes: "<b>x</b>" })).toEqual({ notes: "<b>x</b>" });
  });

  it("refuses an importance outside 1-5 and a missing verdict", () => {
    for (const bad of ["0", "6", "2.5", "x"]) {
      expect(() => reviewBody({ verdict: "dispute", importance: bad, classification: "", notes: "" })).toThrow("importance:");
    }
    expect(() => reviewBody({ verdict: "", importance: "", classification: "", notes: "" })).toThrow("verdict:");
    expect(() => discoveryBody({ name: "n".repeat(65), importance: "", notes: "" })).toThrow("name:");
    expect(() => reviewBody({ verdict: "confirm", importance: "", classification: "", notes: "n".repeat(10_001) })).toThrow("notes:");
  });
});

describe("user and API-key forms", () => {
  it("builds a new user and refuses bad fields by name", () => {
    expect(newUserBody({ username: " dana ", password: "long enough", role: "expert", email: "" }))
      .toEqual({ username: "dana", password: "long enough", role: "expert" });
    expect(() => newUserBody({ username: "", password: "long enough", role: "viewer", email: "" })).toThrow("username:");
    expect(() => newUserBody({ username: "d", password: "short", role: "viewer", email: "" })).toThrow("password:");
    expect(() => newUserBody({ username: "d", password: "long enough", role: "god", email: "" })).toThrow("role:");
    expect(() => newUserBody({ username: "d", password: "long enough", role: "viewer", email: "no-at" })).toThrow("email:");
  });

  it("builds an API key body with scopes and expiry", () => {
    expect(apiKeyBody({ name: "cron", write: false, days: "" })).toEqual({ name: "cron", scopes: ["read"] });
    expect(apiKeyBody({ name: "bot", write: true, days: "30" })).toEqual({ name: "bot", scopes: ["read", "write"], expires_in_days: 30 });
    expect(() => apiKeyBody({ name: " ", write: false, days: "" })).toThrow("name:");
    expect(() => apiKeyBody({ name: "k", write: false, days: "-1" })).toThrow("expires_in_days:");
  });
});
