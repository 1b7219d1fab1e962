// Bundles the action's entry points into dist/ (committed; check-dist compares).
// CommonJS output: esbuild turns the ESM-only @actions/* packages into one
// self-contained file per entry that node24 runs without a loader.
import { build } from 'esbuild'
import { rmSync } from 'node:fs'

const entries = ['main', 'post']
rmSync('dist', { recursive: true, force: true })
await build({
  entryPoints: Object.fromEntries(entries.map(e => [e, `src/entry/${e}.ts`])),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  outdir: 'dist',
  outExtension: { '.js': '.cjs' },
  legalComments: 'none',
  logLevel: 'warning'
})
