// Translations: one data file per locale, served by the backend at
// /ui/i18n/{lang} (source: backend/internal/i18n/locales/*.json). The page
// arrives with lang and dir already chosen by the server (switch cookie,
// else Accept-Language, else French); the switch changes them live.

export type Lang = 'fr' | 'ar' | 'en';
export const LANGS: Lang[] = ['fr', 'ar', 'en'];
const NAMES: Record<Lang, string> = { fr: 'Français', ar: 'العربية', en: 'English' };
const INTL: Record<Lang, string> = { fr: 'fr-MA', ar: 'ar-MA-u-nu-latn', en: 'en-GB' };

let lang: Lang = 'fr';
let texts: Record<string, string> = {};
const listeners: Array<() => void> = [];

export function currentLang(): Lang { return lang; }
export function isRTL(): boolean { return lang === 'ar'; }

async function load(l: Lang): Promise<void> {
  const res = await fetch(`/ui/i18n/${l}`, { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`i18n ${l}: ${res.status}`);
  const body = await res.json();
  texts = body.ui;
  lang = l;
  document.documentElement.lang = l;
  document.documentElement.dir = body.dir;
}

export async function initI18n(): Promise<void> {
  const l = document.documentElement.lang as Lang;
  await load(LANGS.includes(l) ? l : 'fr');
}

export async function setLang(l: Lang): Promise<void> {
  document.cookie = `tawsil_lang=${l}; path=/; max-age=31536000; samesite=lax`;
  await load(l);
  applyTexts(document.body);
  for (const fn of listeners) fn();
}

export function onLangChange(fn: () => void): void { listeners.push(fn); }

/** t returns the text for key, with {name} placeholders filled. */
export function t(key: string, vars?: Record<string, string | number>): string {
  let s = texts[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.split(`{${k}}`).join(String(v));
  return s;
}

/** applyTexts fills data-i18n (text), data-i18n-placeholder, data-i18n-title and data-i18n-aria attributes. */
export function applyTexts(root: ParentNode): void {
  root.querySelectorAll<HTMLElement>('[data-i18n]').forEach(el => { el.textContent = t(el.dataset.i18n!); });
  root.querySelectorAll<HTMLInputElement>('[data-i18n-placeholder]').forEach(el => { el.placeholder = t(el.dataset.i18nPlaceholder!); });
  root.querySelectorAll<HTMLElement>('[data-i18n-title]').forEach(el => { el.title = t(el.dataset.i18nTitle!); });
  root.querySelectorAll<HTMLElement>('[data-i18n-aria]').forEach(el => { el.setAttribute('aria-label', t(el.dataset.i18nAria!)); });
  document.title = t(document.body.dataset.titleKey || 'app.name');
}

export function fmtTime(d: Date | string | number): string {
  return new Intl.DateTimeFormat(INTL[lang], { hour: '2-digit', minute: '2-digit' }).format(new Date(d));
}
export function fmtDateTime(d: Date | string | number): string {
  return new Intl.DateTimeFormat(INTL[lang], { dateStyle: 'short', timeStyle: 'short' }).format(new Date(d));
}
export function fmtNum(n: number, digits = 0): string {
  return new Intl.NumberFormat(INTL[lang], { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(n);
}
export function fmtMAD(n: number): string { return t('unit.mad', { n: fmtNum(n, 2) }); }
/** fmtCountdown: "in 12 min" / "5 min late". */
export function fmtCountdown(to: Date | string, now = Date.now()): string {
  const min = Math.round((new Date(to).getTime() - now) / 60000);
  return min >= 0 ? t('time.in_min', { n: fmtNum(min) }) : t('time.late_min', { n: fmtNum(-min) });
}

/** langSwitch is a <select> naming each language in itself. */
export function langSwitch(): HTMLSelectElement {
  const sel = document.createElement('select');
  sel.className = 'lang-switch';
  sel.setAttribute('data-i18n-aria', 'lang.switch');
  sel.setAttribute('aria-label', t('lang.switch'));
  for (const l of LANGS) {
    const o = document.createElement('option');
    o.value = l; o.textContent = NAMES[l]; o.lang = l;
    sel.append(o);
  }
  sel.value = lang;
  sel.addEventListener('change', () => { void setLang(sel.value as Lang); });
  onLangChange(() => { sel.value = lang; });
  return sel;
}

/** el builds an element: el('div', {class: 'x'}, child, 'text'). */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | boolean | undefined> = {},
  ...children: Array<Node | string | null | undefined | false>): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}
