// The dir: backend on a real filesystem: round trips with both codecs,
// restore-keys lookup, first-complete-save-wins under concurrency (no torn
// archive ever), list/delete/sweep, and a corrupt sidecar never breaking reads.
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, describe, expect, test } from '@jest/globals'

import { onPath } from '../src/storage/compression.js'
import { fileStem, LocalDirStore } from '../src/storage/local-dir.js'

const work = mkdtempSync(join(tmpdir(), 'bmc-dirstore-'))
afterAll(() => rmSync(work, { recursive: true, force: true }))

let n = 0
function archive(content: Buffer = randomBytes(200_000)): { path: string; content: Buffer } {
  const path = join(work, `in-${++n}.tar`)
  writeFileSync(path, content)
  return { path, content }
}
const out = (): string => join(work, `out-${++n}.tar`)
/** An entry's archive file: .tar (stored), .tar.zst or .tar.gz. */
const isArchive = (name: string): boolean => /\.tar(\.zst|\.gz)?$/.test(name)
const clock = (start: number) => {
  let t = start
  return { now: () => new Date((t += 1000)) }
}

describe.each(onPath('zstd') ? (['zstd', 'gzip'] as const) : (['gzip'] as const))('%s', codec => {
  test('save then restore gives the same bytes; the codec is recorded', async () => {
    const root = join(work, `rt-${codec}`)
    const store = new LocalDirStore(root, { codec })
    const a = archive(Buffer.concat([randomBytes(100_000), Buffer.alloc(1_000_000)]))
    expect(await store.save(a.path, 'k-npm-1')).toBe(true)
    const dest = out()
    expect(await store.restore(dest, 'k-npm-1', [])).toBe('k-npm-1')
    expect(readFileSync(dest).equals(a.content)).toBe(true)
    const [entry] = await store.list('k-')
    expect(entry?.compression).toBe(codec)
    expect(entry?.size).toBeLessThan(a.content.length)
  })
})

test('none: stored as a plain tar, restored byte for byte', async () => {
  const store = new LocalDirStore(join(work, 'rt-none'), { codec: 'none' })
  const a = archive()
  expect(await store.save(a.path, 'k-none-1')).toBe(true)
  const dest = out()
  expect(await store.restore(dest, 'k-none-1', [])).toBe('k-none-1')
  expect(readFileSync(dest).equals(a.content)).toBe(true)
  const [entry] = await store.list('k-none-')
  expect(entry).toMatchObject({ compression: 'none', size: a.content.length })
})

test('without a codec, each archive is probed: incompressible data is stored, the rest compressed', async () => {
  const store = new LocalDirStore(join(work, 'rt-auto'))
  // 13 MiB: the probe samples start, middle and end.
  const random = archive(randomBytes(13 * 1024 ** 2))
  const text = archive(Buffer.from('export function add(a, b) { return a + b }\n'.repeat(300_000)))
  expect(await store.save(random.path, 'auto-random')).toBe(true)
  expect(await store.save(text.path, 'auto-text')).toBe(true)
  const entries = new Map((await store.list('auto-')).map(e => [e.key, e]))
  expect(entries.get('auto-random')?.compression).toBe('none')
  expect(entries.get('auto-text')?.compression).toBe(onPath('zstd') ? 'zstd' : 'gzip')
  expect(entries.get('auto-text')?.size).toBeLessThan(text.content.length / 5)
  for (const [key, a] of [
    ['auto-random', random],
    ['auto-text', text]
  ] as const) {
    const dest = out()
    expect(await store.restore(dest, key, [])).toBe(key)
    expect(readFileSync(dest).equals(a.content)).toBe(true)
  }
})

test('restore-keys lookup: exact, primary key as prefix, then restore keys; newest by save time', async () => {
  const store = new LocalDirStore(join(work, 'lookup'), clock(1_000_000))
  const save = async (key: string): Promise<Buffer> => {
    const a = archive()
    expect(await store.save(a.path, key)).toBe(true)
    return a.content
  }
  const old = await save('p-npm-linux-aaa-d1')
  const newer = await save('p-npm-linux-aaa-d2')
  const otherFiles = await save('p-npm-linux-bbb-d3')
  const restoreAs = async (primary: string, restoreKeys: string[]): Promise<Buffer | undefined> => {
    const dest = out()
    const key = await store.restore(dest, primary, restoreKeys)
    return key === undefined ? undefined : readFileSync(dest)
  }
  // Buffer.equals: jest's deep equality is slow on large buffers.
  expect((await restoreAs('p-npm-linux-aaa-d1', []))?.equals(old)).toBe(true)
  expect((await restoreAs('p-npm-linux-aaa', ['p-npm-linux-aaa-', 'p-npm-linux-']))?.equals(newer)).toBe(true)
  expect((await restoreAs('p-npm-linux-ccc', ['p-npm-linux-ccc-', 'p-npm-linux-']))?.equals(otherFiles)).toBe(true)
  expect(await restoreAs('p-apt-linux-aaa', ['p-apt-linux-aaa-', 'p-apt-linux-'])).toBeUndefined()
})

test('two saves of one key racing: the first complete one wins, the other is a no-op; never a torn archive', async () => {
  const root = join(work, 'race')
  for (let round = 0; round < 5; round++) {
    const stores = [new LocalDirStore(root), new LocalDirStore(root), new LocalDirStore(root)]
    const inputs = stores.map(() => archive(randomBytes(1_500_000)))
    const key = `race-${round}`
    const results = await Promise.all(stores.map((s, i) => s.save(inputs[i]?.path ?? '', key)))
    expect(results.filter(Boolean)).toHaveLength(1)
    const dest = out()
    expect(await stores[0]?.restore(dest, key, [])).toBe(key)
    const winner = inputs[results.indexOf(true)]?.content
    expect(readFileSync(dest).equals(winner ?? Buffer.alloc(0))).toBe(true)
  }
  // Losers removed their archives: one archive per sidecar, nothing left in the temp dir.
  const names = readdirSync(root)
  expect(names.filter(f => f.endsWith('.json'))).toHaveLength(5)
  expect(names.filter(f => isArchive(f))).toHaveLength(5)
  expect(readdirSync(join(root, '.tmp'))).toEqual([])
})

test('exists, list, delete; a save of an existing key is a no-op', async () => {
  const store = new LocalDirStore(join(work, 'manage'))
  const a = archive()
  expect(await store.exists(a.path, 'm-1')).toBe(false)
  expect(await store.save(a.path, 'm-1')).toBe(true)
  expect(await store.save(archive().path, 'm-1')).toBe(false)
  expect(await store.exists(a.path, 'm-1')).toBe(true)
  expect(await store.save(archive().path, 'm-2')).toBe(true)
  expect((await store.list('m-')).map(e => e.key).sort()).toEqual(['m-1', 'm-2'])
  expect(await store.list('x-')).toEqual([])
  await store.delete('m-1')
  await store.delete('m-1')
  expect(await store.exists(a.path, 'm-1')).toBe(false)
  expect((await store.list('')).map(e => e.key)).toEqual(['m-2'])
  expect(readdirSync(join(work, 'manage')).filter(f => isArchive(f))).toHaveLength(1)
})

test('a restore records the last use; a fresh entry counts as unused since its save', async () => {
  const times = clock(5_000_000)
  const store = new LocalDirStore(join(work, 'used'), times)
  await store.save(archive().path, 'u-1')
  const [saved] = await store.list('u-')
  expect(saved?.lastUsed.getTime()).toBe(saved?.created.getTime())
  await store.restore(out(), 'u-1', [])
  const [used] = await store.list('u-')
  expect(used?.lastUsed.getTime()).toBeGreaterThan(used?.created.getTime() ?? Infinity)
})

test('unreadable sidecars are skipped; sweep removes old leftovers of interrupted saves only', async () => {
  const root = join(work, 'sweep')
  const store = new LocalDirStore(root)
  await store.save(archive().path, 's-1')
  writeFileSync(join(root, `${fileStem('s-2')}.json`), '{"version":1,"key":"s-2","arch')
  mkdirSync(join(root, '.tmp'), { recursive: true })
  const hourAgo = new Date(Date.now() - 2 * 3_600_000)
  const oldTemp = join(root, '.tmp', 'x.tar.zst')
  const orphan = join(root, 'orphan.1234.tar.zst')
  const fresh = join(root, 'in-progress.5678.tar.zst')
  for (const f of [oldTemp, orphan, fresh]) writeFileSync(f, randomBytes(1000))
  utimesSync(oldTemp, hourAgo, hourAgo)
  utimesSync(orphan, hourAgo, hourAgo)
  expect((await store.list('s-')).map(e => e.key)).toEqual(['s-1'])
  expect(await store.restore(out(), 's-2', ['s-'])).toBe('s-1')
  expect(await store.sweep()).toBe(2000)
  expect(readdirSync(root).filter(f => isArchive(f)).length).toBe(2)
  expect(statSync(fresh).isFile()).toBe(true)
})

test('an entry pruned between lookup and read is an error, not a partial restore', async () => {
  const root = join(work, 'vanish')
  const store = new LocalDirStore(root)
  await store.save(archive().path, 'v-1')
  for (const f of readdirSync(root)) if (isArchive(f)) rmSync(join(root, f))
  await expect(store.restore(out(), 'v-1', [])).rejects.toThrow(/ENOENT/)
})

test('file names stay short and distinct for long and case-different keys', () => {
  const long = `k-${'x'.repeat(400)}`
  expect(fileStem(long).length).toBeLessThan(170)
  expect(fileStem('k-Npm')).not.toBe(fileStem('k-npm'))
  expect(fileStem('.hidden')).toMatch(/^_/)
})
