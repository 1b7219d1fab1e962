import { readFileSync } from 'node:fs'

/** Set by scripts/bundle.mjs to package.json's version: dist/cli.cjs needs no package.json beside it. */
declare const __BMC_VERSION__: string | undefined

/** The package version, as --version prints it. */
export function cliVersion(): string {
  if (typeof __BMC_VERSION__ === 'string') return __BMC_VERSION__
  // Run from the sources (tests, tsx): package.json two levels above src/cli/.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown }
  if (typeof pkg.version !== 'string') throw new Error('package.json has no version')
  return pkg.version
}
