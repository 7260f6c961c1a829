// The API client: bearer tokens from the login, refreshed once on 401,
// Accept-Language from the chosen language, problem documents as ApiError.
import { currentLang } from './i18n';

export interface Problem { type: string; title: string; status: number; detail?: string; [k: string]: unknown }

export class ApiError extends Error {
  constructor(public status: number, public problem: Problem) { super(problem.detail || problem.title); }
}

/** NetworkError: the request never got an answer (offline, server down). */
export class NetworkError extends Error {}

export interface Session { access_token: string; refresh_token: string; role: string; cid?: string; mid?: string; sub?: string; email?: string }

function claims(token: string): Record<string, unknown> {
  const part = token.split('.')[1] || '';
  const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
  return JSON.parse(decodeURIComponent(Array.from(json, c => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join('')));
}

export class Api {
  session: Session | null = null;
  private refreshing: Promise<boolean> | null = null;

  constructor(private store: Storage, private key: string) {
    const raw = store.getItem(key);
    if (raw) { try { this.session = JSON.parse(raw); } catch { store.removeItem(key); } }
  }

  private save(pair: { access_token: string; refresh_token: string }, email?: string): void {
    const c = claims(pair.access_token);
    this.session = { access_token: pair.access_token, refresh_token: pair.refresh_token, role: String(c.role),
      cid: c.cid as string | undefined, mid: c.mid as string | undefined, sub: c.sub as string | undefined, email: email ?? this.session?.email };
    this.store.setItem(this.key, JSON.stringify(this.session));
  }

  async login(email: string, password: string): Promise<Session> {
    const pair = await this.call<{ access_token: string; refresh_token: string }>('POST', '/v1/auth/login', { email, password }, {}, false);
    this.save(pair, email);
    return this.session!;
  }

  logout(): void {
    const s = this.session;
    this.session = null;
    this.store.removeItem(this.key);
    if (s) void fetch('/v1/auth/logout', { method: 'POST', headers: { Authorization: 'Bearer ' + s.access_token } }).catch(() => undefined);
  }

  /** refresh swaps the refresh token for a new pair; false if the session is over. */
  refresh(): Promise<boolean> {
    if (!this.session) return Promise.resolve(false);
    if (!this.refreshing) {
      const rt = this.session.refresh_token;
      this.refreshing = fetch('/v1/auth/refresh', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: rt }) })
        .then(async r => { if (!r.ok) { if (r.status === 401) this.logout(); return false; } this.save(await r.json()); return true; })
        .catch(() => false)
        .finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { 'Accept-Language': currentLang(), ...extra };
    if (this.session) h.Authorization = 'Bearer ' + this.session.access_token;
    return h;
  }

  async call<T>(method: string, path: string, body?: unknown, extra: Record<string, string> = {}, auth = true): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const h = auth ? this.headers(extra) : { 'Accept-Language': currentLang(), ...extra };
      if (body !== undefined) h['Content-Type'] = 'application/json';
      let res: Response;
      try {
        res = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (e) {
        throw new NetworkError(String(e));
      }
      if (res.status === 401 && auth && attempt === 0 && await this.refresh()) continue;
      const text = await res.text();
      const data = text ? JSON.parse(text) : null;
      if (!res.ok) {
        throw new ApiError(res.status, data && typeof data === 'object' ? data : { type: 'about:blank', title: res.statusText, status: res.status });
      }
      return data as T;
    }
  }
}

/** newKey is a fresh idempotency key. */
export function newKey(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, x => x.toString(16).padStart(2, '0')).join('');
}
