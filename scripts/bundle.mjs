// Bundles the action's entry points into dist/ (committed; check-dist compares).
// CommonJS output: esbuild turns the ESM-only @actions/* packages into one
// self-contained file per entry that node24 runs without a loader.
//   node scripts/bundle.mjs [outdir]     (default dist; tests bundle into a temp dir)
import { build } from 'esbuild'
import { chmodSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'

const outdir = process.argv[2] ?? 'dist'
// cli is the buildkit-mount-cache bin: its source starts with a #!/usr/bin/env node
// line, which esbuild keeps as the bundle's first line (above the banner).
const entries = ['main', 'post', 'restore-only', 'save-only', 'cli']
// The CLI's --version (src/cli/version.ts): fixed at build time, so cli.cjs runs without package.json beside it.
const { version } = JSON.parse(readFileSync('package.json', 'utf8'))
rmSync(outdir, { recursive: true, force: true })
await build({
  entryPoints: Object.fromEntries(entries.map(e => [e, `src/entry/${e}.ts`])),
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  outdir,
  outExtension: { '.js': '.cjs' },
  legalComments: 'none',
  // Some dependencies read import.meta.url, which CommonJS lacks: give it the bundle's own URL.
  define: { 'import.meta.url': '__bundleUrl', __BMC_VERSION__: JSON.stringify(version) },
  // @actions/cache recognises its own error classes by name (a refused reservation is info, not a warning).
  keepNames: true,
  banner: { js: "const __bundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning'
})
chmodSync(join(outdir, 'cli.cjs'), 0o755)
