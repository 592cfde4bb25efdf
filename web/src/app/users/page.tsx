"use client";
import { useCallback, useEffect, useState } from "react";
import { api, atLeast, type Role } from "@/lib/api";
import { apiKeyBody, newUserBody, ROLES } from "@/lib/review";
import { useSession } from "@/lib/useSession";

interface User { id: number; username: string; email: string | null; role: Role; is_active: boolean; created_at: string }
interface Key { id: number; name: string; prefix: string; scopes: string[]; expires_at: string | null; revoked_at: string | null; last_used_at: string | null; created_at: string }

const card = "rounded-lg border border-slate-200 bg-white p-3 dark:border-slate-800 dark:bg-slate-900";
const field = "rounded border border-slate-400 bg-white px-1 py-0.5 dark:border-slate-600 dark:bg-slate-900";
const btn = "rounded bg-indigo-700 px-3 py-1 text-sm text-white hover:bg-indigo-800";
const day = (s: string | null) => (s ? s.slice(0, 10) : "—");

/** Users and roles (admins), and the caller's own API keys. */
export default function UsersPage() {
  const session = useSession();
  const admin = atLeast(session?.role, "admin");
  const [users, setUsers] = useState<User[] | null>(null);
  const [keys, setKeys] = useState<Key[]>([]);
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const [form, setForm] = useState({ username: "", password: "", role: "curator", email: "" });
  const [keyForm, setKeyForm] = useState({ name: "", write: false, days: "" });
  const [secret, setSecret] = useState<{ name: string; key: string } | null>(null);

  const load = useCallback(() => {
    if (!admin) return;
    api<User[]>("/users").then(setUsers).catch((e: Error) => setMessage({ ok: false, text: e.message }));
    api<Key[]>("/auth/api-keys").then(setKeys).catch((e: Error) => setMessage({ ok: false, text: e.message }));
  }, [admin]);
  useEffect(load, [load]);

  const act = async (what: string, call: () => Promise<unknown>) => {
    try {
      await call();
      setMessage({ ok: true, text: what });
      load();
      return true;
    } catch (err) {
      setMessage({ ok: false, text: `refused: ${err instanceof Error ? err.message : String(err)}` });
      return false;
    }
  };

  if (session === undefined) return <p>Loading…</p>;
  if (!admin) {
    return (
      <div className="flex flex-col gap-2">
        <h1 className="text-xl font-semibold">Users</h1>
        <p role="alert" data-testid="admin-only">Only administrators manage users; your role is {session?.role}.</p>
      </div>
    );
  }
  return (
    <div className="flex flex-col gap-4">
      <h1 className="text-xl font-semibold">Users</h1>
      {message && (
        <p role="status" data-testid="users-message" className={`text-sm ${message.ok ? "text-emerald-800 dark:text-emerald-300" : "text-red-800 dark:text-red-300"}`}>{message.text}</p>
      )}
      <section className={card} aria-labelledby="users-title">
        <h2 id="users-title" className="mb-2 font-semibold">Accounts</h2>
        {users === null ? <p>Loading…</p> : (
          <div className="overflow-x-auto">
            <table className="text-sm" data-testid="users-table">
              <thead><tr className="text-left">
                <th scope="col" className="pr-4">User</th><th scope="col" className="pr-4">Email</th>
                <th scope="col" className="pr-4">Role</th><th scope="col" className="pr-4">Active</th><th scope="col">Since</th>
              </tr></thead>
              <tbody>
                {users.map((u) => (
                  <tr key={u.id} data-username={u.username}>
                    <td className="pr-4">{u.username}</td>
                    <td className="pr-4">{u.email ?? "—"}</td>
                    <td className="pr-4">
                      <select aria-label={`Role of ${u.username}`} className={field} value={u.role}
                        disabled={u.username === session?.username}
                        onChange={(e) => void act(`${u.username} is now ${e.target.value}`, () => api(`/users/${u.id}/role`, { method: "PUT", json: { role: e.target.value } }))}>
                        {ROLES.map((r) => <option key={r} value={r}>{r}</option>)}
                      </select>
                    </td>
                    <td className="pr-4">{u.is_active ? "yes" : "no"}</td>
                    <td>{day(u.created_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <form aria-label="Create a user" className="mt-3 flex flex-wrap items-end gap-3 text-sm"
          onSubmit={async (e) => {
            e.preventDefault();
            let body: Record<string, unknown>;
            try { body = newUserBody(form); } catch (err) { setMessage({ ok: false, text: (err as Error).message }); return; }
            if (await act(`user ${String(body.username)} created`, () => api("/users", { method: "POST", json: body }))) {
              setForm({ username: "", password: "", role: "curator", email: "" });
            }
          }}>
          <label className="flex flex-col">New username
            <input className={field} value={form.username} autoComplete="off" onChange={(e) => setForm({ ...form, username: e.target.value })} />
          </label>
          <label className="flex flex-col">Initial password
            <input className={field} type="password" autoComplete="new-password" value={form.password} onChange={(e) => setForm({ ...form, password: e.target.value })} />
          </label>
          <label className="flex flex-col">Role
            <select className={field} value={form.role} onChange={(e) => setForm({ ...form, role: e.target.value })}>
              {ROLES.map((r) => <option key={r} value={r}>{r}</option>)}
            </select>
          </label>
          <label className="flex flex-col">Email (optional)
            <input className={field} type="email" value={form.email} onChange={(e) => setForm({ ...form, email: e.target.value })} />
          </label>
          <button type="submit" className={btn}>Create user</button>
        </form>
      </section>

      <section className={card} aria-labelledby="keys-title">
        <h2 id="keys-title" className="mb-2 font-semibold">My API keys</h2>
        {secret && (
          <div role="alert" data-testid="new-key" className="mb-2 rounded bg-amber-100 p-2 text-sm text-amber-900 dark:bg-amber-900 dark:text-amber-100">
            Key “{secret.name}”: <code data-testid="new-key-secret" className="break-all">{secret.key}</code>
            <br />This is the only time it is shown: store it now.
            <button type="button" className="ml-2 underline" onClick={() => setSecret(null)}>I have stored it</button>
          </div>
        )}
        {keys.length === 0 ? <p className="text-sm">No API keys yet.</p> : (
          <table className="text-sm" data-testid="keys-table">
            <thead><tr className="text-left">
              <th scope="col" className="pr-4">Name</th><th scope="col" className="pr-4">Prefix</th><th scope="col" className="pr-4">Scopes</th>
              <th scope="col" className="pr-4">Expires</th><th scope="col" className="pr-4">Last used</th><th scope="col">State</th>
            </tr></thead>
            <tbody>
              {keys.map((k) => (
                <tr key={k.id} data-key-name={k.name}>
                  <td className="pr-4">{k.name}</td><td className="pr-4 font-mono">{k.prefix}</td>
                  <td className="pr-4">{k.scopes.join(", ")}</td><td className="pr-4">{day(k.expires_at)}</td>
                  <td className="pr-4">{day(k.last_used_at)}</td>
                  <td>{k.revoked_at ? `revoked ${day(k.revoked_at)}` : (
                    <button type="button" className="underline" aria-label={`Revoke key ${k.name}`}
                      onClick={() => { if (window.confirm(`Revoke the key “${k.name}”? Scripts using it stop working.`)) void act(`key ${k.name} revoked`, () => api(`/auth/api-keys/${k.id}`, { method: "DELETE" })); }}>
                      Revoke
                    </button>
                  )}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <form aria-label="Create an API key" className="mt-3 flex flex-wrap items-end gap-3 text-sm"
          onSubmit={async (e) => {
            e.preventDefault();
            let body: Record<string, unknown>;
            try { body = apiKeyBody(keyForm); } catch (err) { setMessage({ ok: false, text: (err as Error).message }); return; }
            await act(`key ${String(body.name)} created`, async () => {
              const made = await api<{ name: string; key: string }>("/auth/api-keys", { method: "POST", json: body });
              setSecret({ name: made.name, key: made.key });
              setKeyForm({ name: "", write: false, days: "" });
            });
          }}>
          <label className="flex flex-col">Key name
            <input className={field} value={keyForm.name} onChange={(e) => setKeyForm({ ...keyForm, name: e.target.value })} />
          </label>
          <label className="flex items-center gap-1">
            <input type="checkbox" checked={keyForm.write} onChange={(e) => setKeyForm({ ...keyForm, write: e.target.checked })} />
            may write (vote, upload)
          </label>
          <label className="flex flex-col">Expires in (days, optional)
            <input className={field} inputMode="decimal" value={keyForm.days} onChange={(e) => setKeyForm({ ...keyForm, days: e.target.value })} />
          </label>
          <button type="submit" className={btn}>Create key</button>
        </form>
      </section>
    </div>
  );
}
