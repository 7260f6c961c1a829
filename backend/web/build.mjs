// Builds src/ into dist/ with esbuild (pinned in package-lock.json).
//   node build.mjs          write dist/
//   node build.mjs --check  build into a temporary directory and fail if
//                           dist/ differs (the committed build is stale)
import * as esbuild from 'esbuild';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { tmpdir } from 'node:os';

const here = new URL('.', import.meta.url).pathname;
const check = process.argv.includes('--check');
const out = check ? mkdtempSync(join(tmpdir(), 'tawsil-web-')) : join(here, 'dist');

async function build(dir) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'assets'), { recursive: true });
  const common = { bundle: true, minify: true, target: ['es2020'], legalComments: 'none', logLevel: 'warning', charset: 'utf8' };
  await esbuild.build({ ...common, entryPoints: ['console', 'courier', 'track'].map(n => join(here, 'src', n + '.ts')), outdir: join(dir, 'assets'),
    format: 'iife', loader: { '.png': 'file', '.svg': 'file' }, assetNames: '[name]-[hash]' });
  await esbuild.build({ ...common, entryPoints: [join(here, 'src', 'sw.ts')], outfile: join(dir, 'sw.js'), format: 'iife' });
  for (const f of ['console.html', 'courier.html', 'track.html']) cpSync(join(here, 'src', f), join(dir, f));
  cpSync(join(here, 'src/static/manifest.webmanifest'), join(dir, 'manifest.webmanifest'));
  for (const f of ['icon.svg', 'icon-192.png', 'icon-512.png']) cpSync(join(here, 'src/static', f), join(dir, 'assets', f));
}

function files(dir) {
  const outList = [];
  const walk = d => { for (const e of readdirSync(d)) { const p = join(d, e); if (statSync(p).isDirectory()) walk(p); else outList.push(relative(dir, p)); } };
  walk(dir);
  return outList.sort();
}

await build(out);
if (check) {
  const dist = join(here, 'dist');
  const a = files(out), b = files(dist);
  const diff = [...new Set([...a, ...b])].filter(f => !a.includes(f) || !b.includes(f) || !readFileSync(join(out, f)).equals(readFileSync(join(dist, f))));
  rmSync(out, { recursive: true, force: true });
  if (diff.length) {
    console.error('backend/web/dist does not match src/ (run `npm run build` in backend/web and commit): ' + diff.join(', '));
    process.exit(1);
  }
  console.log('backend/web/dist matches src/');
}
