// SPDX-License-Identifier: Apache-2.0
// Bundles upload-kit.entry.js with esbuild (all pinned in package-lock.json,
// installed by deploy/install.d/web-vendor) into OUTDIR/upload-kit.js, one
// ES module the browser loads from /staff/, and writes OUTDIR/licenses.txt:
// the name, version, licence and licence text of every package whose code
// the bundle holds, found from esbuild's list of the files it read (so the
// record is exactly what is shipped). Run by meson (server/web/meson.build):
//   node build.mjs OUTDIR
import { createRequire } from 'node:module';
import { existsSync, readFileSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ? resolve(process.argv[2]) : null;
if (!out) {
  console.error('usage: node build.mjs OUTDIR');
  process.exit(2);
}
const modules = join(here, 'node_modules');
const lock = JSON.parse(readFileSync(join(here, 'package-lock.json'), 'utf8'));
const want = lock.packages[''].dependencies;
const stale = Object.entries(want).filter(([name, version]) => {
  const p = join(modules, name, 'package.json');
  return !existsSync(p) || JSON.parse(readFileSync(p, 'utf8')).version !== version;
});
if (stale.length) {
  console.error(`server/web/vendor: ${stale.map(([n, v]) => `${n}@${v}`).join(', ')} not installed ` +
    '(run deploy/install.d/web-vendor, which deploy/install-deps runs)');
  process.exit(1);
}

const require = createRequire(join(here, 'package.json'));
const esbuild = require('esbuild');
const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: ['upload-kit.entry.js'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  outfile: join(out, 'upload-kit.js'),
  metafile: true,
  minify: false,
  legalComments: 'none', // the licences are in licenses.txt, whole
  banner: { js: '// upload-kit.js: tus-js-client and @noble/hashes (SHA-256), bundled by dems\n' +
    '// (server/web/vendor/build.mjs). Their licences: /staff/licenses.txt' },
  logLevel: 'warning',
});

// Each file esbuild read belongs to the package whose directory holds it
// (real paths both: node_modules may be a symbolic link, and esbuild
// reports where the files really are).
const realModules = realpathSync(modules);
const packages = new Map();
for (const file of Object.keys(result.metafile.inputs)) {
  const parts = relative(realModules, realpathSync(join(here, file))).split(sep);
  if (parts[0] === '..') continue; // ours (the entry)
  const dir = join(modules, ...(parts[0].startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)));
  packages.set(dir, true);
}
if (packages.size === 0) {
  console.error('server/web/vendor: the bundle holds no package: cannot say whose code it is');
  process.exit(1);
}
const texts = [];
for (const dir of [...packages.keys()].sort()) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
  if (!file) {
    console.error(`server/web/vendor: ${pkg.name} has no licence file to ship`);
    process.exit(1);
  }
  texts.push(`${'='.repeat(72)}\n${pkg.name} ${pkg.version} (${pkg.license})\n` +
    `${pkg.homepage || ''}\n${'='.repeat(72)}\n\n${readFileSync(join(dir, file), 'utf8').trim()}\n`);
}
writeFileSync(join(out, 'licenses.txt'),
  'Third-party code in the dems staff application (/staff/upload-kit.js).\n' +
  'dems itself is Apache-2.0 licensed; each package below keeps its own licence.\n\n' +
  texts.join('\n'));
