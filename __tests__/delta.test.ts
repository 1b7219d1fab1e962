// Delta entries and chains without an engine: what a chain composes to (the
// same digest as a full archive of that tree), hostile and mismatched deltas
// refused as a whole, the split writing a delta, and fetching a chain from a
// store with links missing or foreign.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'

import { afterEach, beforeEach, describe, expect, test } from '@jest/globals'

import { forEachComposed } from '../src/archive/compose.js'
import { DELTA_META_NAME, deltaMetaText, type DeltaMeta } from '../src/archive/delta.js'
import { injectStream } from '../src/archive/inject-stream.js'
import { scanChain, scanMountArchive } from '../src/archive/scan.js'
import { splitExport } from '../src/archive/split.js'
import { fetchChain } from '../src/core/chain.js'
import { deltaBudget } from '../src/core/delta-policy.js'
import { deltaKey, mountKeys } from '../src/core/keys.js'
import { ArchiveError } from '../src/errors.js'
import { MemoryStore } from '../test-support/fakes/store.js'
import { makeTar, readTar, type RawEntry } from './helpers/tar.js'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bmc-delta-'))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const T = new Date('2020-01-02T03:04:05Z')
const d = (name: string, extra: Partial<RawEntry> = {}): RawEntry => ({ name, type: 'directory', mode: 0o755, mtime: T, ...extra })
const f = (name: string, body: string, extra: Partial<RawEntry> = {}): RawEntry => ({ name, type: 'file', mode: 0o644, mtime: T, body, ...extra })

const BASE: RawEntry[] = [
  d('./'),
  d('pkgs'),
  f('pkgs/a', 'aaa'),
  f('pkgs/b', 'bbb'),
  { name: 'pkgs/b-link', type: 'link', linkname: 'pkgs/b', mtime: T, mode: 0o644 },
  d('old'),
  f('old/x', 'x'),
  f('retype', 'was a file'),
  { name: 'soft', type: 'symlink', linkname: 'pkgs/a', mtime: T, mode: 0o777 }
]

const meta = (deleted: string[], chain = ['base-key'], sequence = chain.length): DeltaMeta => ({ base: chain[0] ?? '', chain, sequence, deleted })
const metaEntry = (m: DeltaMeta): RawEntry => ({ name: DELTA_META_NAME, type: 'file', mode: 0o644, mtime: new Date(0), body: deltaMetaText(m) })

async function archive(name: string, entries: RawEntry[]): Promise<string> {
  const path = join(dir, name)
  writeFileSync(path, await makeTar(entries))
  return path
}

async function composed(layers: string[]): Promise<string[]> {
  const out: string[] = []
  await forEachComposed(layers, async (e, body) => {
    let text = ''
    for await (const c of body ?? []) text += c.toString()
    out.push(`${e.type} ${e.path}${e.linkname !== undefined ? ` -> ${e.linkname}` : ''}${text ? ` = ${text}` : ''} ${e.mode.toString(8)}`)
  })
  return out.sort()
}

describe('a chain composes to one tree', () => {
  test('later layers win, removals remove, a directory can become a file; the digest is a full archive’s', async () => {
    const base = await archive('base', BASE)
    const d1 = await archive('d1', [
      metaEntry(meta(['old/x', 'old', 'pkgs/a'])),
      d('pkgs', { mtime: new Date('2021-01-01T00:00:00Z') }),
      f('pkgs/new', 'new'),
      f('old', 'a file now'),
      f('pkgs/b', 'bbb2'),
      { name: 'pkgs/b-link', type: 'link', linkname: 'pkgs/b', mtime: T, mode: 0o644 }
    ])
    const d2 = await archive('d2', [
      metaEntry(meta(['retype'], ['base-key', 'base-key-d1-aaaaaaaaaaaa'])),
      d('retype'),
      f('retype/in', 'in'),
      f('pkgs/new', 'newer', { mode: 0o600 })
    ])
    expect(await composed([base, d1, d2])).toEqual([
      'directory  755',
      'directory pkgs 755',
      'directory retype 755',
      'file old = a file now 644',
      'file pkgs/b = bbb2 644',
      'file pkgs/new = newer 600',
      'file retype/in = in 644',
      'link pkgs/b-link -> pkgs/b 644',
      'symlink soft -> pkgs/a 777'
    ])
    const full = await archive('full', [
      d('./'),
      d('pkgs', { mtime: new Date('2021-01-01T00:00:00Z') }),
      f('pkgs/b', 'bbb2'),
      { name: 'pkgs/b-link', type: 'link', linkname: 'pkgs/b', mtime: T, mode: 0o644 },
      f('pkgs/new', 'newer', { mode: 0o600 }),
      f('old', 'a file now'),
      d('retype'),
      f('retype/in', 'in'),
      { name: 'soft', type: 'symlink', linkname: 'pkgs/a', mtime: T, mode: 0o777 }
    ])
    const limits = { maxBytes: 1024 ** 2 }
    expect((await scanChain([base, d1, d2], limits)).digest).toBe((await scanMountArchive(full, limits)).digest)
    expect((await scanChain([base, d1], limits)).digest).not.toBe((await scanMountArchive(full, limits)).digest)
  })

  test('the inject stream sends the composed directories last, deepest first', async () => {
    const base = await archive('base', BASE)
    const d1 = await archive('d1', [metaEntry(meta([])), f('old/y', 'y'), d('deep'), d('deep/er'), f('deep/er/z', 'z')])
    const sent = (await readTar(injectStream(Readable.from([{ index: 0, archivePath: base, deltas: [d1] }])))).map(e => e.header.name)
    const dirs = sent.filter(n => n.endsWith('/'))
    expect(sent.slice(-dirs.length - 2, -2)).toEqual(dirs)
    expect(sent.at(-2)).toBe('ok.0')
    expect(dirs).toEqual(['c0/pkgs/', 'c0/old/', 'c0/deep/er/', 'c0/deep/', 'c0/'])
    expect(sent.at(-1)).toBe('fixups')
  })
})

describe('a chain that does not fit is refused as a whole', () => {
  const refused = async (entries: RawEntry[], code: string, message?: RegExp): Promise<void> => {
    const base = await archive('base', BASE)
    const delta = await archive('delta', entries)
    const error = await scanChain([base, delta], { maxBytes: 1024 ** 2 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ArchiveError)
    expect((error as ArchiveError).code).toBe(code)
    if (message) expect((error as ArchiveError).message).toMatch(message)
  }

  test('no meta record first', () => refused([f('pkgs/z', 'z')], 'ARCHIVE_DELTA_INVALID', /no meta record/))
  test('a removed path outside the mount', () => refused([metaEntry(meta(['../etc/passwd']))], 'ARCHIVE_PATH_UNSAFE'))
  test('a record that is not the format', () =>
    refused([{ name: DELTA_META_NAME, type: 'file', body: '{"format":"other"}' }], 'ARCHIVE_DELTA_INVALID', /unknown format/))
  test('an entry below a directory it removed', () =>
    refused([metaEntry(meta(['old/x', 'old'])), f('old/new', 'n')], 'ARCHIVE_DELTA_INVALID', /"old" is not a directory of the result/))
  test('a base entry left below a directory it replaced by a file', () =>
    refused([metaEntry(meta([])), f('old', 'file')], 'ARCHIVE_DELTA_INVALID', /"old" is not a directory/))
  test('a base hardlink whose target it removed', () => refused([metaEntry(meta(['pkgs/b']))], 'ARCHIVE_LINK_UNSAFE'))
  test('a setuid file', () => refused([metaEntry(meta([])), f('pkgs/s', 's', { mode: 0o4755 })], 'ARCHIVE_MODE_UNSAFE'))
  test('an entry through a symlink', () => refused([metaEntry(meta([])), f('soft/x', 'x')], 'ARCHIVE_PATH_ESCAPE'))
  test('a delta as the base', async () => {
    const fake = await archive('fake-base', [metaEntry(meta([])), ...BASE])
    const delta = await archive('delta', [metaEntry(meta([]))])
    await expect(scanChain([fake, delta], { maxBytes: 1024 ** 2 })).rejects.toThrow(/the base of a chain is a delta/)
  })
})

describe('the split writes a delta', () => {
  test('its meta record first, then only the entries that came; removals counted and digested', async () => {
    const stream = await makeTar([f('status', ''), f('delta.c0', 'gone\nold/x\n'), f('c0/pkgs/new', 'n')])
    const target = { dir: 'c0', archivePath: join(dir, 'out.tar'), delta: { base: 'b', chain: ['b'], sequence: 1 } }
    const summaries = await splitExport(
      Readable.from([stream]),
      [target],
      async () => undefined,
      dirName => (dirName === 'c0' ? ['gone', 'old/x'] : undefined)
    )
    expect(summaries.get('c0')).toMatchObject({ deleted: 2, entries: 1, bytes: 1 })
    const entries = await readTar(readFileSync(target.archivePath))
    expect(entries.map(e => e.header.name)).toEqual([DELTA_META_NAME, 'pkgs/new'])
    expect(JSON.parse(entries[0]?.body.toString() ?? '')).toMatchObject({ base: 'b', chain: ['b'], sequence: 1, deleted: ['gone', 'old/x'] })
  })
})

describe('fetching a chain', () => {
  const keys = mountKeys('p', 'npm', 'linux/amd64', 'files')
  const baseKey = `${keys.base}-0123456789abcdef`

  async function storeChain(store: MemoryStore, links: number): Promise<string[]> {
    const chain = [baseKey]
    store.put(baseKey, await makeTar(BASE))
    for (let i = 1; i <= links; i++) {
      const key = deltaKey(chain, `digest-${i}`)
      store.put(key, await makeTar([metaEntry(meta([], [...chain])), f(`pkgs/n${i}`, String(i))]))
      chain.push(key)
    }
    return chain
  }

  test('all links: base first, the tip last', async () => {
    const store = new MemoryStore()
    const chain = await storeChain(store, 3)
    const path = join(dir, 'm.tar')
    expect(await store.restore(path, keys.base, keys.restoreKeys)).toBe(chain[3])
    const fetched = await fetchChain(store, path, chain[3] as string)
    expect(fetched.keys).toEqual(chain)
    expect(fetched.cut).toBeUndefined()
    expect(fetched.deltaBytes).toBeGreaterThan(0)
    expect((await scanChain(fetched.layers, { maxBytes: 1024 ** 2 })).entries).toBe(BASE.length + 3)
  })

  test('a missing middle link ends the chain before it; a missing base leaves nothing', async () => {
    const store = new MemoryStore()
    const chain = await storeChain(store, 3)
    store.entries.delete(chain[2] as string)
    const path = join(dir, 'm.tar')
    await store.restore(path, chain[3] as string, [])
    const fetched = await fetchChain(store, path, chain[3] as string)
    expect(fetched.keys).toEqual(chain.slice(0, 2))
    expect(fetched.cut).toMatch(/^delta 2 \(.*\) is not in the cache/)

    store.entries.delete(baseKey)
    await store.restore(path, chain[3] as string, [])
    await expect(fetchChain(store, path, chain[3] as string)).rejects.toThrow(/the delta's base .* is not in the cache/)
  })

  test('a link saved for another chain is not used', async () => {
    const store = new MemoryStore()
    const chain = await storeChain(store, 2)
    // Evicted and saved again on another parent: same key, another chain in its record.
    store.put(chain[1] as string, await makeTar([metaEntry(meta([], [baseKey, 'elsewhere'], 2)), f('x', 'x')]))
    const path = join(dir, 'm.tar')
    await store.restore(path, chain[2] as string, [])
    const fetched = await fetchChain(store, path, chain[2] as string)
    expect(fetched.keys).toEqual([baseKey])
    expect(fetched.cut).toMatch(/belongs to another chain/)
  })
})

describe('when a delta is saved', () => {
  const keys = mountKeys('p', 'npm', 'linux/amd64', 'files')
  const base = `${keys.base}-0123456789abcdef`
  test('within the share of the base and the count; never on a chain of other key files', () => {
    expect(deltaBudget(keys, { keys: [base], baseBytes: 1000, deltaBytes: 0 })).toBe(300)
    expect(deltaBudget(keys, { keys: [base, 'x'], baseBytes: 1000, deltaBytes: 290 })).toBe(10)
    expect(deltaBudget(keys, { keys: [base, 'x'], baseBytes: 1000, deltaBytes: 300 })).toBeUndefined()
    expect(deltaBudget(keys, { keys: [base, ...Array.from({ length: 8 }, (_, i) => `d${i}`)], baseBytes: 1e9, deltaBytes: 0 })).toBeUndefined()
    const other = mountKeys('p', 'npm', 'linux/amd64', 'other-files')
    expect(deltaBudget(other, { keys: [base], baseBytes: 1000, deltaBytes: 0 })).toBeUndefined()
  })

  test('delta keys start with the base key and differ by parent', () => {
    const k1 = deltaKey([base], 'digest')
    expect(k1).toMatch(new RegExp(`^${base}-d1-[0-9a-f]{12}$`))
    expect(deltaKey([base, k1], 'digest')).toMatch(/-d2-[0-9a-f]{12}$/)
    expect(deltaKey([base, 'other-parent'], 'digest')).not.toBe(deltaKey([base, k1], 'digest'))
  })
})
