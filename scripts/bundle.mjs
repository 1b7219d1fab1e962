// Bundles the action into dist/ (committed; check-dist compares).
//   node scripts/bundle.mjs [outdir]     (default dist; tests bundle into a temp dir)
//
// Layout:
//   index.cjs      the action's code and its libraries, one minified bundle
//   main.cjs, post.cjs, restore-only.cjs, save-only.cjs, cli.cjs
//                  thin entry points (the paths action.yml and package.json's bin
//                  name), each a few lines that require ./index.cjs
//   s3-sdk.cjs     the AWS SDK (src/storage/s3-sdk.ts), imported at run time by the
//                  s3:// store on first use: no other backend reads it
//   licenses.txt   every bundled package: name, version, license and its text
//
// Why (measured with esbuild 0.25 on this tree): one self-contained bundle per
// entry, unminified, was 4.3 MB each, 21 MB in all, and every step parsed the
// whole AWS SDK at start-up. Minified, a self-contained bundle is 2.0 MB, 0.6 MB
// of it the AWS SDK; five of them would be 7 MB even without the SDK. One shared
// bundle (1.4 MB) plus the SDK on its own (0.6 MB) is 2.3 MB with the licenses,
// and a step with a github or dir: backend parses only the 1.4 MB: about a
// third less CPU and 17 MB less memory at start-up than before.
//
// CommonJS output: esbuild turns the ESM-only @actions/* packages into CommonJS
// that node24 runs without a loader. Names are kept (keepNames): @actions/cache
// recognises its own error classes by name (a refused reservation is info, not a
// warning).
import { build } from 'esbuild'
import { chmodSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

const outdir = process.argv[2] ?? 'dist'
// The CLI's --version (src/cli/version.ts): fixed at build time, so the CLI runs without package.json beside it.
const { version } = JSON.parse(readFileSync('package.json', 'utf8'))
const entries = ['main', 'post', 'restore-only', 'save-only', 'cli']

/** Resolves `specifier`, imported by `importer`, to a file of the bundle left to run time. */
function runtimeImport(importer, specifier, path) {
  return {
    name: `runtime-${path}`,
    setup(b) {
      const filter = new RegExp(`^${specifier.replace(/[.\\/]/g, '\\$&')}$`)
      b.onResolve({ filter }, args => (resolve(args.importer) === resolve(importer) ? { path, external: true } : undefined))
    }
  }
}

const common = { bundle: true, platform: 'node', target: 'node24', format: 'cjs', outdir, outExtension: { '.js': '.cjs' }, logLevel: 'warning' }
const library = {
  ...common,
  minify: true,
  keepNames: true,
  metafile: true,
  legalComments: 'none',
  // Some dependencies read import.meta.url, which CommonJS lacks: give it the bundle's own URL.
  define: { 'import.meta.url': '__bundleUrl', __BMC_VERSION__: JSON.stringify(version) },
  banner: { js: "const __bundleUrl = require('node:url').pathToFileURL(__filename).href;" }
}

rmSync(outdir, { recursive: true, force: true })
const bundles = await Promise.all([
  // The dynamic import('./s3-sdk.js') in s3.ts stays an import() of ./s3-sdk.cjs beside index.cjs.
  build({ ...library, entryPoints: { index: 'src/entry/index.ts' }, plugins: [runtimeImport('src/storage/s3.ts', './s3-sdk.js', './s3-sdk.cjs')] }),
  build({ ...library, entryPoints: { 's3-sdk': 'src/storage/s3-sdk.ts' } })
])
// cli is the buildkit-mount-cache bin: its source starts with a #!/usr/bin/env node
// line, which esbuild keeps as the file's first line.
await Promise.all(
  entries.map(e =>
    build({ ...common, entryPoints: { [e]: `src/entry/${e}.ts` }, plugins: [runtimeImport(`src/entry/${e}.ts`, './index.js', './index.cjs')] })
  )
)
chmodSync(join(outdir, 'cli.cjs'), 0o755)
writeFileSync(join(outdir, 'licenses.txt'), licenses(bundles.map(b => b.metafile)))

/**
 * The third-party licenses file: each package a bundle holds (from esbuild's
 * metafile: the node_modules directory of every input that made it into an
 * output), with the license its package.json declares and the texts of its
 * LICENSE / NOTICE / COPYING files.
 */
function licenses(metafiles) {
  const dirs = new Set()
  for (const metafile of metafiles) {
    for (const output of Object.values(metafile.outputs)) {
      for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
        const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input)
        if (m && bytesInOutput > 0) dirs.add(resolve(m[1]))
      }
    }
  }
  const packages = [...dirs].map(dir => {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
    const files = readdirSync(dir)
      .filter(f => /^(licen[cs]e|notice|copying)/i.test(f))
      .sort()
    const author = typeof pkg.author === 'string' ? pkg.author : pkg.author?.name
    return { name: pkg.name, version: pkg.version, license: licenseOf(pkg), author, texts: files.map(f => readFileSync(join(dir, f), 'utf8').trim()) }
  })
  packages.sort((a, b) => (a.name === b.name ? a.version.localeCompare(b.version) : a.name < b.name ? -1 : 1))
  // A few packages ship no license file: say what their package.json declares, and where the same license's text is.
  for (const p of packages.filter(p => p.texts.length === 0)) {
    const same = packages.find(q => q.license === p.license && q.texts.length > 0)
    p.texts.push(
      `The package ships no license file; its package.json declares ${p.license}${p.author ? ` (author: ${p.author})` : ''}.` +
        (same ? ` The text of ${p.license} is the one under ${same.name}@${same.version} in this file.` : '')
    )
  }
  const rule = '-'.repeat(80)
  const head = [
    'Third-party software bundled in this directory (dist/), generated by scripts/bundle.mjs.',
    'buildkit-mount-cache itself is MIT licensed: see LICENSE in the repository.',
    '',
    ...packages.map(p => `${p.name}@${p.version}  ${p.license}`)
  ]
  const body = packages.map(p => [rule, `${p.name}@${p.version}`, `License: ${p.license}`, '', ...p.texts].join('\n'))
  return [...head, '', ...body, ''].join('\n')
}

function licenseOf(pkg) {
  if (typeof pkg.license === 'string') return pkg.license
  if (pkg.license?.type) return pkg.license.type
  if (Array.isArray(pkg.licenses)) return pkg.licenses.map(l => l.type ?? l).join(' OR ')
  return 'UNKNOWN'
}
