// The local cache service's REST API for caches (test-support/cache-service/rest.ts),
// spoken to with plain fetch as GitHub documents it: listing by key prefix and ref with
// pages, deleting by key (and ref) and by id, the token and permission answers, faults,
// and that a deleted entry is gone for the cache protocol too.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals'

import { serviceV2 } from '../src/storage/github/config.js'
import { GitHubStreamStore } from '../src/storage/github/stream-store.js'
import { controlClient, startCacheService, type CacheService } from '../test-support/cache-service/server.js'

let service: CacheService
let dir: string
let stream: GitHubStreamStore

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bmc-rest-svc-'))
  service = await startCacheService({ dataDir: join(dir, 'service'), repository: 'octo/app' })
  stream = new GitHubStreamStore(serviceV2(service.env())!, { codec: 'none', policy: { attempts: 1, baseMs: 1, maxWaitMs: 1 } })
})
afterAll(async () => {
  await service.close()
  rmSync(dir, { recursive: true, force: true })
})
afterEach(() => {
  service.faults.clear()
  service.setApi({ permission: 'write', ref: 'refs/heads/main' })
})

/** Saves an entry through the cache protocol, as a job of the service's current ref. */
async function save(key: string, bytes = 10): Promise<void> {
  const path = join(dir, 'archive.tar')
  writeFileSync(path, Buffer.alloc(bytes, 7))
  expect(await stream.save(path, key)).toBe(true)
}

interface Listed {
  id: number
  ref: string
  key: string
  version: string
  last_accessed_at: string
  created_at: string
  size_in_bytes: number
}
interface ListAnswer {
  total_count: number
  actions_caches: Listed[]
}

async function api(
  method: string,
  path: string,
  query: Record<string, string> = {},
  auth: string | null = `Bearer ${service.githubToken}`
): Promise<{ status: number; body: unknown }> {
  const url = new URL(`${service.env().GITHUB_API_URL}/repos/${service.env().GITHUB_REPOSITORY}/actions/caches${path}`)
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v)
  const res = await fetch(url, {
    method,
    headers: { Accept: 'application/vnd.github+json', 'X-GitHub-Api-Version': '2022-11-28', ...(auth !== null ? { Authorization: auth } : {}) }
  })
  const text = await res.text()
  return { status: res.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) }
}
const list = async (query: Record<string, string>): Promise<ListAnswer> => {
  const r = await api('GET', '', query)
  expect(r.status).toBe(200)
  return r.body as ListAnswer
}
const keysOf = (a: ListAnswer): string[] => a.actions_caches.map(c => c.key).sort()

test('the env points a REST client at the service: API URL without a trailing slash, repository, ref', () => {
  const env = service.env()
  expect(env.GITHUB_API_URL).toBe(service.url.replace(/\/$/, ''))
  expect([env.GITHUB_REPOSITORY, env.GITHUB_REF]).toEqual(['octo/app', 'refs/heads/main'])
  expect(service.githubToken).not.toBe(service.token)
})

describe('GET actions/caches', () => {
  test('key is a prefix, ref a filter; each entry has the documented fields', async () => {
    await save('ls-a-1', 11)
    await save('ls-a-2')
    await save('ls-b-1')
    service.setApi({ ref: 'refs/heads/feature' })
    await save('ls-a-3')
    const a = await list({ key: 'ls-a-' })
    expect([a.total_count, keysOf(a)]).toEqual([3, ['ls-a-1', 'ls-a-2', 'ls-a-3']])
    expect(keysOf(await list({ key: 'ls-a-', ref: 'refs/heads/main' }))).toEqual(['ls-a-1', 'ls-a-2'])
    expect(keysOf(await list({ key: 'ls-a-', ref: 'refs/heads/feature' }))).toEqual(['ls-a-3'])
    const one = (await list({ key: 'ls-a-1' })).actions_caches[0]!
    expect(one).toEqual({
      id: expect.any(Number),
      ref: 'refs/heads/main',
      key: 'ls-a-1',
      version: expect.stringMatching(/./),
      last_accessed_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      size_in_bytes: expect.any(Number)
    })
    expect(one.size_in_bytes).toBeGreaterThan(11)
  })

  test('pages: per_page and page; total_count counts every match', async () => {
    for (let i = 0; i < 7; i++) await save(`pg-${i}`)
    const pages = await Promise.all([1, 2, 3, 4].map(page => list({ key: 'pg-', per_page: '3', page: String(page) })))
    expect(pages.map(p => [p.total_count, p.actions_caches.length])).toEqual([
      [7, 3],
      [7, 3],
      [7, 1],
      [7, 0]
    ])
    expect(new Set(pages.flatMap(p => p.actions_caches.map(c => c.key))).size).toBe(7)
  })

  test('per_page is 30 by default and at most 100', async () => {
    for (let i = 0; i < 105; i++) await save(`many-${i}`, 1)
    expect((await list({ key: 'many-' })).actions_caches).toHaveLength(30)
    const big = await list({ key: 'many-', per_page: '1000' })
    expect([big.total_count, big.actions_caches.length]).toEqual([105, 100])
    expect((await list({ key: 'many-', per_page: '100', page: '2' })).actions_caches).toHaveLength(5)
  })

  test('newest access first by default; a lookup that matches an entry counts as an access', async () => {
    await save('acc-old')
    await save('acc-new')
    expect((await list({ key: 'acc-' })).actions_caches.map(c => c.key)).toEqual(['acc-new', 'acc-old'])
    await new Promise(resolve => setTimeout(resolve, 5))
    expect(await stream.exists(join(dir, 'archive.tar'), 'acc-old')).toBe(true)
    expect((await list({ key: 'acc-' })).actions_caches.map(c => c.key)).toEqual(['acc-old', 'acc-new'])
    expect((await list({ key: 'acc-', sort: 'created_at', direction: 'asc' })).actions_caches.map(c => c.key)).toEqual(['acc-old', 'acc-new'])
  })
})

describe('DELETE actions/caches?key=', () => {
  test('deletes exactly that key (of one ref when given), answers what it deleted; gone for the cache protocol too', async () => {
    await save('del-k')
    await save('del-k-d1')
    service.setApi({ ref: 'refs/heads/other' })
    await save('del-k2')
    const wrongRef = await api('DELETE', '', { key: 'del-k2', ref: 'refs/heads/main' })
    expect(wrongRef.status).toBe(404)
    const r = await api('DELETE', '', { key: 'del-k', ref: 'refs/heads/main' })
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ total_count: 1, actions_caches: [expect.objectContaining({ key: 'del-k', ref: 'refs/heads/main' })] })
    expect(keysOf(await list({ key: 'del-k' }))).toEqual(['del-k-d1', 'del-k2'])
    const archive = join(dir, 'archive.tar')
    expect(await stream.exists(archive, 'del-k')).toBe(false)
    expect(await stream.exists(archive, 'del-k-d1')).toBe(true)
    expect(service.entries().some(e => e.key === 'del-k')).toBe(false)
    // The key can be saved again.
    await save('del-k')
    expect((await api('DELETE', '', { key: 'del-k2' })).status).toBe(200)
    expect((await api('DELETE', '', { key: 'del-k2' })).status).toBe(404)
  })

  test('without a key: 422', async () => {
    expect((await api('DELETE', '')).status).toBe(422)
  })
})

describe('DELETE actions/caches/{id}', () => {
  test('204, then 404', async () => {
    await save('byid')
    const id = (await list({ key: 'byid' })).actions_caches[0]!.id
    expect((await api('DELETE', `/${id}`)).status).toBe(204)
    expect((await api('DELETE', `/${id}`)).status).toBe(404)
    expect((await list({ key: 'byid' })).total_count).toBe(0)
  })
})

describe('tokens and permissions', () => {
  test('no token or a wrong one: 401; `token <t>` works as well as Bearer', async () => {
    expect((await api('GET', '', {}, null)).status).toBe(401)
    const wrong = await api('GET', '', {}, 'Bearer not-the-token')
    expect([wrong.status, (wrong.body as { message: string }).message]).toEqual([401, 'Bad credentials'])
    expect((await api('GET', '', {}, `Bearer ${service.token}`)).status).toBe(401)
    expect((await api('GET', '', { key: 'x' }, `token ${service.githubToken}`)).status).toBe(200)
  })

  test('actions: read lists but may not delete; none may do neither (403 as GitHub words it)', async () => {
    await save('perm-k')
    service.setApi({ permission: 'read' })
    expect((await api('GET', '', { key: 'perm-' })).status).toBe(200)
    const refused = await api('DELETE', '', { key: 'perm-k' })
    expect([refused.status, (refused.body as { message: string }).message]).toEqual([403, 'Resource not accessible by integration'])
    const id = (await list({ key: 'perm-k' })).actions_caches[0]!.id
    expect((await api('DELETE', `/${id}`)).status).toBe(403)
    service.setApi({ permission: 'none' })
    expect((await api('GET', '', { key: 'perm-' })).status).toBe(403)
    service.setApi({ permission: 'write' })
    expect((await list({ key: 'perm-k' })).total_count).toBe(1)
  })

  test('another repository is 404', async () => {
    const res = await fetch(`${service.env().GITHUB_API_URL}/repos/octo/other/actions/caches`, {
      headers: { Authorization: `Bearer ${service.githubToken}` }
    })
    expect(res.status).toBe(404)
  })

  test('the control API changes the permission and the ref, and refuses bad values', async () => {
    const control = controlClient(service.url, service.token)
    expect(await control.setApi({ permission: 'read', ref: 'refs/pull/7/merge' })).toMatchObject({ permission: 'read', ref: 'refs/pull/7/merge' })
    expect(service.env().GITHUB_REF).toBe('refs/pull/7/merge')
    await save('ctl-k')
    expect(service.entries().find(e => e.key === 'ctl-k')?.ref).toBe('refs/pull/7/merge')
    await expect(control.setApi({ permission: 'admin' as 'read' })).rejects.toThrow(/permission must be one of/)
    expect(() => service.setApi({ ref: 'main' })).toThrow(/ref must be like/)
  })
})

test('faults hit the REST calls by op or the rest group, with the REST error body', async () => {
  await save('flt-k')
  service.faults.add({ match: { op: 'rest' }, action: { status: 503, message: 'try later' }, times: 1 })
  const hit = await api('GET', '', { key: 'flt-' })
  expect([hit.status, (hit.body as { message: string }).message]).toEqual([503, 'try later'])
  service.faults.add({ match: { op: 'rest.DeleteCachesByKey', key: 'flt-k' }, action: { status: 500 } })
  expect((await api('DELETE', '', { key: 'other' })).status).toBe(404)
  expect((await api('DELETE', '', { key: 'flt-k' })).status).toBe(500)
  expect(service.requests.filter(r => r.op === 'rest.DeleteCachesByKey').map(r => [r.key, r.status])).toContainEqual(['flt-k', 500])
})
