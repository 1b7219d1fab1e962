// GitHub's REST API for caches from our side (src/storage/github/rest.ts, removal.ts) and
// deleting a superseded chain (src/storage/supersede.ts), against the local cache service:
// listing by prefix over pages, deleting by key and ref, a refused token, retried 5xx, the
// deadline; deleteChain on the GitHub store and on a dir: store.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from '@jest/globals'

import { serviceV2 } from '../src/storage/github/config.js'
import { githubRemoval } from '../src/storage/github/removal.js'
import { GitHubApiError, GitHubRestClient, restTarget, type RestOptions } from '../src/storage/github/rest.js'
import type { RetryPolicy } from '../src/storage/github/retry.js'
import { githubStore } from '../src/storage/github/select.js'
import { GitHubStreamStore } from '../src/storage/github/stream-store.js'
import { LocalDirStore } from '../src/storage/local-dir.js'
import type { CacheStore } from '../src/storage/store.js'
import { openStore } from '../src/storage/select.js'
import { ChainDeleteError, deleteChain } from '../src/storage/supersede.js'
import { applyEnv } from '../test-support/cache-service/env.js'
import { startCacheService, type CacheService } from '../test-support/cache-service/server.js'
import { captureLog } from '../test-support/fakes/log.js'
import { MemoryStore } from '../test-support/fakes/store.js'

let service: CacheService
let dir: string
let stream: GitHubStreamStore
const waits: number[] = []
const fast: RetryPolicy = { attempts: 3, baseMs: 1, maxWaitMs: 50, sleep: async ms => void waits.push(ms) }
const rest: RestOptions = { policy: fast }

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bmc-rest-'))
  service = await startCacheService({ dataDir: join(dir, 'service'), repository: 'octo/app' })
  stream = new GitHubStreamStore(serviceV2(service.env())!, { codec: 'none', policy: { attempts: 1, baseMs: 1, maxWaitMs: 1 } })
})
afterAll(async () => {
  await service.close()
  rmSync(dir, { recursive: true, force: true })
})
let log: ReturnType<typeof captureLog>
beforeEach(() => {
  log = captureLog()
  waits.length = 0
})
afterEach(() => {
  log.restore()
  service.faults.clear()
  service.setApi({ permission: 'write', ref: 'refs/heads/main' })
})

const archive = (): string => {
  const path = join(dir, 'archive.tar')
  writeFileSync(path, Buffer.alloc(16, 1))
  return path
}
/** Saves an entry through the cache protocol, from the service's current ref. */
async function save(key: string): Promise<void> {
  expect(await stream.save(archive(), key)).toBe(true)
}
const client = (options: RestOptions = rest): GitHubRestClient => new GitHubRestClient(restTarget(service.githubToken, service.env()), options)
const serviceKeys = (prefix: string): string[] =>
  service
    .entries()
    .map(e => e.key)
    .filter(k => k.startsWith(prefix))
    .sort()

describe('restTarget', () => {
  test('GITHUB_API_URL (default api.github.com) and GITHUB_REPOSITORY; a missing or odd repository is an error', () => {
    expect(restTarget('t', { GITHUB_REPOSITORY: 'o/r' })).toEqual({ apiUrl: 'https://api.github.com', repository: 'o/r', token: 't' })
    expect(() => restTarget('t', {})).toThrow('GITHUB_REPOSITORY is not set')
    expect(() => restTarget('t', { GITHUB_REPOSITORY: 'o/r/../x' })).toThrow('not owner/name')
    expect(() => restTarget('t', { GITHUB_REPOSITORY: 'o/r', GITHUB_API_URL: 'file:///etc' })).toThrow('GITHUB_API_URL')
  })
})

describe('GitHubRestClient', () => {
  test('lists every entry of a key prefix over several pages, with the API headers', async () => {
    for (let i = 0; i < 103; i++) await save(`pages-${String(i).padStart(3, '0')}`)
    await save('pagesX')
    service.clearRequests()
    const listed = await client().listCaches({ key: 'pages-' })
    expect(listed.map(c => c.key).sort()).toEqual(serviceKeys('pages-'))
    expect(listed).toHaveLength(103)
    expect(listed[0]).toEqual(expect.objectContaining({ id: expect.any(Number), ref: 'refs/heads/main', sizeInBytes: expect.any(Number) }))
    const calls = service.requests.filter(r => r.op === 'rest.ListCaches')
    expect(calls.map(r => new URLSearchParams(r.query).get('page'))).toEqual(['1', '2'])
    expect(calls.every(r => new URLSearchParams(r.query).get('per_page') === '100')).toBe(true)
  })

  test('the ref narrows a listing; deleting by key takes every version of exactly that key, of that ref only', async () => {
    await save('scoped-k')
    await save('scoped-k-d1-aaaaaaaaaaaa')
    service.setApi({ ref: 'refs/heads/feature' })
    await save('scoped-k-d2-bbbbbbbbbbbb')
    expect((await client().listCaches({ key: 'scoped-', ref: 'refs/heads/feature' })).map(c => c.key)).toEqual(['scoped-k-d2-bbbbbbbbbbbb'])
    expect(await client().deleteCachesByKey('scoped-k-d2-bbbbbbbbbbbb', 'refs/heads/main')).toEqual([])
    const deleted = await client().deleteCachesByKey('scoped-k', 'refs/heads/main')
    expect(deleted.map(c => [c.key, c.ref])).toEqual([['scoped-k', 'refs/heads/main']])
    expect(serviceKeys('scoped-')).toEqual(['scoped-k-d1-aaaaaaaaaaaa', 'scoped-k-d2-bbbbbbbbbbbb'])
    // An entry already gone is no error.
    expect(await client().deleteCachesByKey('scoped-k')).toEqual([])
    expect(await client().deleteCachesByKey('scoped-k-d2-bbbbbbbbbbbb')).toHaveLength(1)
  })

  test('403 (no actions: write) and 401 are errors with the status that say what the job needs; never retried', async () => {
    await save('perm-k')
    service.setApi({ permission: 'read' })
    const refused = await client()
      .deleteCachesByKey('perm-k')
      .catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(GitHubApiError)
    expect((refused as GitHubApiError).status).toBe(403)
    expect((refused as Error).message).toBe(
      'GitHub API: delete cache: HTTP 403 (Resource not accessible by integration): the job needs `permissions: actions: write` and a token (the `github-token` input, by default ${{ github.token }})'
    )
    const wrong = new GitHubRestClient({ ...restTarget(service.githubToken, service.env()), token: 'ghs_wrong' }, rest)
    const denied = await wrong.listCaches({ key: 'perm-' }).catch((e: unknown) => e)
    expect([(denied as GitHubApiError).status, (denied as Error).message]).toEqual([
      401,
      expect.stringContaining('(Bad credentials): the job needs `permissions: actions: write`')
    ])
    expect(waits).toEqual([])
    expect(serviceKeys('perm-')).toEqual(['perm-k'])
  })

  test('5xx and 429 are retried with a log line; what still fails is thrown with its status', async () => {
    await save('retry-k')
    service.faults.add({ match: { op: 'rest.DeleteCachesByKey' }, action: { status: 503 }, times: 1 })
    service.faults.add({ match: { op: 'rest.DeleteCachesByKey' }, action: { status: 429, retryAfterSeconds: 0 }, times: 1 })
    expect(await client().deleteCachesByKey('retry-k')).toHaveLength(1)
    expect(waits).toHaveLength(2)
    expect(log.logger.of('info').filter(l => l.startsWith('GitHub API: delete cache failed'))).toHaveLength(2)
    service.faults.add({ match: { op: 'rest.ListCaches' }, action: { status: 502 } })
    const failed = await client()
      .listCaches({ key: 'retry-' })
      .catch((e: unknown) => e)
    expect([(failed as GitHubApiError).status, service.requests.filter(r => r.op === 'rest.ListCaches' && r.status === 502).length]).toEqual([502, 3])
  })

  test('no call outlasts its deadline: a silent API ends the call with an error saying so', async () => {
    // Short enough to be over before the file's last test: the service's own wait is not cut.
    service.faults.add({ match: { op: 'rest.ListCaches' }, action: { delayMs: 900 } })
    const started = Date.now()
    await expect(client({ policy: fast, deadlineMs: 200 }).listCaches({ key: 'slow-' })).rejects.toThrow(
      'GitHub API: list caches: no answer within 200 ms'
    )
    expect(Date.now() - started).toBeLessThan(800)
  })

  test('the token is in no log line and no error', async () => {
    service.faults.add({ match: { op: 'rest' }, action: { status: 500, message: 'boom' } })
    const error = await client()
      .listCaches({ key: 'x' })
      .catch((e: unknown) => e)
    const text = [String((error as Error).message), ...log.logger.lines.map(l => l.message)].join('\n')
    expect(text).toContain('boom')
    expect(text).not.toContain(service.githubToken)
  })
})

describe('githubRemoval', () => {
  test("keys and deletions stay in the job's ref (GITHUB_REF); another branch's entries are left alone", async () => {
    await save('ref-k-d1-aaaaaaaaaaaa')
    service.setApi({ ref: 'refs/heads/other' })
    await save('ref-k-d2-bbbbbbbbbbbb')
    const removal = githubRemoval(service.githubToken, { ...service.env(), GITHUB_REF: 'refs/heads/main' }, rest)
    expect(await removal.keys('ref-k')).toEqual(['ref-k-d1-aaaaaaaaaaaa'])
    await removal.delete('ref-k-d2-bbbbbbbbbbbb')
    await removal.delete('ref-k-d1-aaaaaaaaaaaa')
    expect(serviceKeys('ref-k')).toEqual(['ref-k-d2-bbbbbbbbbbbb'])
  })

  test('without a token, every call fails naming the github-token input, and nothing is asked', async () => {
    service.clearRequests()
    const removal = githubRemoval(undefined, service.env(), rest)
    await expect(removal.keys('x')).rejects.toThrow(
      'deleting GitHub cache entries needs a token: the job needs `permissions: actions: write` and a token (the `github-token` input'
    )
    await expect(githubRemoval('', service.env(), rest).delete('x')).rejects.toThrow('`github-token` input')
    expect(service.requests).toEqual([])
  })
})

/** A chain F, its deltas and the entries that only look alike, saved through `put`. */
async function plantChain(put: (key: string) => Promise<void>, base: string): Promise<void> {
  for (const key of [
    base,
    `${base}-d1-aaaaaaaaaaaa`,
    `${base}-d2-bbbbbbbbbbbb`,
    `${base}-d3-cccccccccccc`,
    `${base}0123456789abcdef`,
    `${base.slice(0, -1)}`
  ]) {
    await put(key)
  }
}

describe('deleteChain', () => {
  const expectChainGone = (left: string[], base: string): void =>
    expect(left).toEqual([base.slice(0, -1), `${base}-d3-cccccccccccc`, `${base}0123456789abcdef`].sort())

  test('on the GitHub store: the base and its -d entries go, the kept one and longer keys stay', async () => {
    const base = 'bmc-v1-npm-linux-amd64-1f2e3d4c-0011223344556677'
    await plantChain(save, base)
    const store = githubStore(service.env(), { githubToken: service.githubToken, rest })
    const result = await deleteChain(store, base, [`${base}-d3-cccccccccccc`])
    expect(result.deleted).toEqual([base, `${base}-d1-aaaaaaaaaaaa`, `${base}-d2-bbbbbbbbbbbb`])
    expectChainGone(serviceKeys(base.slice(0, -1)), base)
    expect(await store.exists(archive(), base)).toBe(false)
    // Nothing left to delete: no error.
    expect(await deleteChain(store, base, [`${base}-d3-cccccccccccc`])).toEqual({ deleted: [] })
  })

  test("on the GitHub store, another branch's entries of the same chain stay", async () => {
    const base = 'bmc-v1-go-linux-amd64-aa-1111111111111111'
    await save(base)
    service.setApi({ ref: 'refs/heads/other' })
    await save(`${base}-d1-aaaaaaaaaaaa`)
    service.setApi({ ref: 'refs/heads/main' })
    const store = githubStore(service.env(), { githubToken: service.githubToken, rest })
    expect(await deleteChain(store, base, [])).toEqual({ deleted: [base] })
    expect(serviceKeys(base)).toEqual([`${base}-d1-aaaaaaaaaaaa`])
  })

  test('openStore hands the token to the GitHub store (as the action does with its github-token input)', async () => {
    const base = 'bmc-v1-gradle-linux-amd64-ff-6666666666666666'
    await save(base)
    await save(`${base}-d1-aaaaaaaaaaaa`)
    const restoreEnv = applyEnv(service.env())
    try {
      expect(await deleteChain(openStore('github', { githubToken: service.githubToken }), base, [base])).toEqual({
        deleted: [`${base}-d1-aaaaaaaaaaaa`]
      })
      await expect(deleteChain(openStore('github'), base, [])).rejects.toThrow('`github-token` input')
    } finally {
      restoreEnv()
    }
    expect(serviceKeys(base)).toEqual([base])
  })

  test('the library client (GHES, v1) deletes through the same API', async () => {
    const base = 'bmc-v1-pip-linux-amd64-bb-2222222222222222'
    await save(base)
    const store = githubStore({ ...service.env(), ACTIONS_CACHE_SERVICE_V2: '' }, { githubToken: service.githubToken, rest })
    expect(await deleteChain(store, base, [])).toEqual({ deleted: [base] })
  })

  test('without actions: write, the first refusal ends it: one deletion tried, an error naming the permission', async () => {
    const base = 'bmc-v1-apt-linux-amd64-cc-3333333333333333'
    await plantChain(save, base)
    service.setApi({ permission: 'read' })
    service.clearRequests()
    const store = githubStore(service.env(), { githubToken: service.githubToken, rest })
    const error = await deleteChain(store, base, []).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ChainDeleteError)
    expect((error as ChainDeleteError).deleted).toEqual([])
    expect((error as Error).message).toMatch(
      /^could not delete bmc-v1-apt-\S+ \(GitHub API: delete cache: HTTP 403 .*`permissions: actions: write`.*\); 3 more not tried$/
    )
    expect(service.requests.filter(r => r.op === 'rest.DeleteCachesByKey')).toHaveLength(1)
    expect(serviceKeys(base)).toHaveLength(5)
  })

  test('without a token on the GitHub store: an error naming the github-token input', async () => {
    const store = githubStore(service.env(), { rest })
    await expect(deleteChain(store, 'bmc-v1-x-linux-amd64-dd-4444444444444444', [])).rejects.toThrow(
      /^could not list the entries of bmc-v1-x-\S+: deleting GitHub cache entries needs a token: .*`github-token` input/
    )
  })

  test('a failed deletion does not stop the others; the error lists it and carries what was deleted', async () => {
    const base = 'bmc-v1-cargo-linux-amd64-ee-5555555555555555'
    await plantChain(save, base)
    service.faults.add({ match: { op: 'rest.DeleteCachesByKey', key: `${base}-d1-aaaaaaaaaaaa` }, action: { status: 500 } })
    const store = githubStore(service.env(), { githubToken: service.githubToken, rest })
    const error = (await deleteChain(store, base, []).catch((e: unknown) => e)) as ChainDeleteError
    expect(error.message).toMatch(new RegExp(`^could not delete ${base}-d1-aaaaaaaaaaaa \\(GitHub API: delete cache: HTTP 500`))
    expect(error.deleted).toEqual([base, `${base}-d2-bbbbbbbbbbbb`, `${base}-d3-cccccccccccc`])
  })

  test('on a dir: store, through its own listing', async () => {
    const root = join(dir, 'local')
    const store = new LocalDirStore(root)
    const base = 'bmc-v1-npm-linux-amd64-1f2e3d4c-8899aabbccddeeff'
    await plantChain(async key => void (await store.save(archive(), key)), base)
    expect(await deleteChain(store, base, [`${base}-d3-cccccccccccc`])).toEqual({
      deleted: [base, `${base}-d1-aaaaaaaaaaaa`, `${base}-d2-bbbbbbbbbbbb`]
    })
    expectChainGone((await store.list('')).map(e => e.key).sort(), base)
    expect(await new LocalDirStore(root).exists(archive(), base)).toBe(false)
  })

  test('the in-memory store of the unit tests deletes as the GitHub cache does, and refuses as it does', async () => {
    const store = new MemoryStore()
    const base = 'k-npm-linux-amd64-h-0000000000000000'
    await plantChain(async key => store.put(key, Buffer.from(key)), base)
    expect((await deleteChain(store, base, [])).deleted).toHaveLength(4)
    expect([...store.entries.keys()].sort()).toEqual([base.slice(0, -1), `${base}0123456789abcdef`].sort())
    store.put(base, Buffer.from('again'))
    store.faults.deleteRefused = true
    await expect(deleteChain(store, base, [])).rejects.toThrow('`permissions: actions: write`')
  })

  test('a store that cannot delete, or no base key: an error', async () => {
    const memory = new MemoryStore()
    const bare: CacheStore = {
      available: () => true,
      readable: () => true,
      writable: () => true,
      restore: (p, k, r) => memory.restore(p, k, r),
      find: (p, k, r) => memory.find(p, k, r),
      exists: (p, k) => memory.exists(p, k),
      save: (p, k) => memory.save(p, k)
    }
    await expect(deleteChain(bare, 'k', [])).rejects.toThrow('this storage backend cannot delete entries')
    await expect(deleteChain(new MemoryStore(), '', [])).rejects.toThrow('needs its base key')
  })
})
