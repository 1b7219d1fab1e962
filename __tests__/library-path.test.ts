// The path the GitHub backend hands to @actions/cache, and the entry version
// the library derives from it (its own getCacheVersion, read from its code):
// the same on runners installed in different directories.
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

import { describe, expect, test } from '@jest/globals'

import { archivePathOf, defaultArchiveRoot } from '../src/core/job.js'
import { LIBRARY_DIR, libraryPathOf } from '../src/storage/actions-cache.js'
import { REPO_ROOT } from '../test-support/action-runner.js'

type VersionFn = (paths: string[], compression?: string, crossOs?: boolean) => string
// Not exported by the package: imported by file, to compute exactly what the library sends.
const { getCacheVersion } = (await import(pathToFileURL(join(REPO_ROOT, 'node_modules/@actions/cache/lib/internal/cacheUtils.js')).href)) as {
  getCacheVersion: VersionFn
}

/** A runner installed at `root`, laid out as GitHub's runner lays out its work directory. */
function runner(root: string): { env: NodeJS.ProcessEnv; cwd: string; archive: string } {
  const env = { RUNNER_TEMP: `${root}/_work/_temp`, GITHUB_WORKSPACE: `${root}/_work/app/app` }
  return { env, cwd: env.GITHUB_WORKSPACE, archive: archivePathOf(defaultArchiveRoot(env), {}, 'npm') }
}

describe('libraryPathOf', () => {
  test('runners in different directories hand the library the same path, so the entry version is the same', () => {
    const a = runner('/home/runner')
    const b = runner('/opt/actions-runner-2')
    const pa = libraryPathOf(a.archive, a.env, a.cwd)
    const pb = libraryPathOf(b.archive, b.env, b.cwd)
    expect(pa).toEqual({ path: `${LIBRARY_DIR}/npm.tar`, staged: `/home/runner/_work/app/app/${LIBRARY_DIR}/npm.tar` })
    expect(pb.path).toBe(pa.path)
    expect(getCacheVersion([pb.path], 'zstd-without-long')).toBe(getCacheVersion([pa.path], 'zstd-without-long'))
    // What the version hashed before: the absolute archive path, different per runner.
    expect(getCacheVersion([b.archive], 'zstd-without-long')).not.toBe(getCacheVersion([a.archive], 'zstd-without-long'))
  })

  test('the path is what the library can glob (no "." or ".." segment) and names the archive', () => {
    const { path } = libraryPathOf('/any/where/ns_npm_0123abcd.tar', { GITHUB_WORKSPACE: '/w' }, '/w')
    expect(path).toBe('.buildkit-mount-cache-archives/ns_npm_0123abcd.tar')
    expect(path.split('/').some(s => s === '.' || s === '..')).toBe(false)
  })

  test('without GITHUB_WORKSPACE the working directory is the workspace, as for the library', () => {
    expect(libraryPathOf('/t/npm.tar', {}, '/here')).toEqual({ path: `${LIBRARY_DIR}/npm.tar`, staged: `/here/${LIBRARY_DIR}/npm.tar` })
  })

  test('a working directory other than the workspace hands over the absolute path (a version of that location only)', () => {
    expect(libraryPathOf('/t/npm.tar', { GITHUB_WORKSPACE: '/w' }, '/w/sub')).toEqual({ path: '/t/npm.tar' })
  })
})
