import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'

import { afterAll, describe, expect, test } from '@jest/globals'
import * as tar from 'tar-stream'

import { FIXUP_GROUP_PATHS, injectStream, type LiveArchive, type StreamMount } from '../src/archive/inject-stream.js'
import { scanMountArchive } from '../src/archive/scan.js'
import { ReadyQueue } from '../src/core/ready-queue.js'
import { makeTar, readTar, type RawEntry } from './helpers/tar.js'

const dir = mkdtempSync(join(tmpdir(), 'inject-stream-test-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let n = 0
async function archive(entries: RawEntry[]): Promise<string> {
  const file = join(dir, `a${n++}.tar`)
  writeFileSync(file, await makeTar(entries))
  return file
}

const t = new Date('2024-05-06T07:08:09Z')
const ts = t.getTime() / 1000
const tree: RawEntry[] = [
  { name: './', type: 'directory', mode: 0o750, uid: 1000, gid: 1000, mtime: t, uname: 'someone', gname: 'group' },
  { name: 'a/', type: 'directory', mode: 0o755, mtime: t },
  { name: 'a/b/', type: 'directory', mode: 0o700, mtime: t },
  { name: 'a/b/f', type: 'file', mode: 0o644, uid: 0, gid: 5, pax: { uid: '300000' }, mtime: t, body: 'f' },
  { name: 'a/l', type: 'symlink', linkname: 'b/f', mode: 0o777, uid: 7, gid: 8, mtime: new Date(1000_000) },
  { name: 'c', type: 'file', mode: 0o600, mtime: t, body: 'c' },
  { name: 'h', type: 'link', linkname: 'c', mode: 0o600, mtime: t }
]

type Outcome = Parameters<LiveArchive['settle']>[0]
const errorOf = (o: Outcome | undefined): unknown => (o !== undefined && 'error' in o ? o.error : undefined)

async function* of(...mounts: StreamMount[]): AsyncIterable<StreamMount> {
  yield* mounts
}

describe('injectStream', () => {
  test('sends directories after their contents, under c<index>/, then the fix-up list', async () => {
    const entries = await readTar(injectStream(of({ index: 2, archivePath: await archive(tree) })))
    expect(entries.map(e => e.header.name)).toEqual(['at.2', 'c2/a/b/f', 'c2/a/b/', 'c2/a/l', 'c2/a/', 'c2/c', 'c2/h', 'c2/', 'ok.2', 'fixups'])
    expect(entries.find(e => e.header.name === 'c2/h')?.header.linkname).toBe('c2/c')
    expect(entries.find(e => e.header.name === 'c2/')?.header).toMatchObject({ uid: 1000, gid: 1000, mode: 0o750, uname: '', gname: '' })
    expect(entries.find(e => e.header.name === 'c2/a/b/f')?.body.toString()).toBe('f')
  })

  test('the fix-up list: owners and times of symlinks and large ids first, then directories links were made in', async () => {
    const entries = await readTar(injectStream(of({ index: 0, archivePath: await archive(tree) })))
    const fixups = entries.at(-1)?.body.toString()
    expect(fixups).toBe(
      [`E 300000 5 ${ts} 1`, '/bmc/c0/a/b/f', 'E 7 8 1000 1', '/bmc/c0/a/l', `D 0 0 ${ts} 2`, '/bmc/c0/a', '/bmc/c0', ''].join('\n')
    )
  })

  test('entries sharing an owner and a time share one group, split every FIXUP_GROUP_PATHS paths', async () => {
    const links: RawEntry[] = Array.from({ length: FIXUP_GROUP_PATHS + 5 }, (_, i) => ({
      name: `l${i}`,
      type: 'symlink',
      linkname: 'x',
      uid: 3,
      gid: 4,
      mtime: t
    }))
    const entries = await readTar(injectStream(of({ index: 0, archivePath: await archive([{ name: './', type: 'directory', mtime: t }, ...links]) })))
    const lines = (entries.at(-1)?.body.toString() ?? '').split('\n')
    expect(lines.filter(l => l.startsWith('E '))).toEqual([`E 3 4 ${ts} ${FIXUP_GROUP_PATHS}`, `E 3 4 ${ts} 5`])
    expect(lines.filter(l => l.startsWith('D '))).toEqual([`D 0 0 ${ts} 1`])
    expect(lines.filter(l => l.startsWith('/bmc/c0/l'))).toHaveLength(FIXUP_GROUP_PATHS + 5)
  })

  test('a tree without a root entry gets the default root, last', async () => {
    const entries = await readTar(injectStream(of({ index: 1, archivePath: await archive([{ name: 'x', type: 'file', mtime: t, body: 'x' }]) })))
    expect(entries.map(e => e.header.name)).toEqual(['at.1', 'c1/x', 'c1/', 'ok.1', 'fixups'])
    expect(entries[2]?.header).toMatchObject({ uid: 0, gid: 0, mode: 0o755 })
  })

  test('streams each mount as it becomes ready, before the next one is', async () => {
    const queue = new ReadyQueue<StreamMount>()
    const first = await archive(tree)
    const second = await archive([{ name: './', type: 'directory', mtime: t }])
    queue.push({ index: 0, archivePath: first })
    const extract = tar.extract()
    injectStream(queue).pipe(extract)
    const names: string[] = []
    const iterator = extract[Symbol.asyncIterator]()
    for (;;) {
      const { value } = (await iterator.next()) as { value: { header: tar.Header; resume(): void } }
      names.push(value.header.name)
      value.resume()
      if (value.header.name === 'c0/') break
    }
    // The first mount went out whole while the second was still "downloading".
    expect(names).toHaveLength(8)
    queue.push({ index: 1, archivePath: second })
    queue.end()
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) {
      const entry = r.value as { header: tar.Header; resume(): void }
      names.push(entry.header.name)
      entry.resume()
    }
    expect(names.slice(8)).toEqual(['ok.0', 'at.1', 'c1/', 'ok.1', 'fixups'])
  })

  test('an unsafe archive is dropped: begun, never marked complete, its fix-ups left out; the next mount goes through', async () => {
    const bad = await archive([
      { name: './', type: 'directory', mtime: t },
      { name: 'l', type: 'symlink', linkname: 'x', uid: 3, mtime: t },
      { name: '../escape', type: 'file', mtime: t, body: 'x' }
    ])
    const packed: Array<[number, string | undefined]> = []
    const entries = await readTar(
      injectStream(of({ index: 0, archivePath: bad }, { index: 1, archivePath: await archive(tree) }), (index, error) =>
        packed.push([index, error === undefined ? undefined : String(error)])
      )
    )
    const names = entries.map(e => e.header.name)
    expect(names.slice(0, 3)).toEqual(['at.0', 'c0/l', 'at.1'])
    expect(names).not.toContain('ok.0')
    expect(names).toContain('ok.1')
    expect(packed[0]?.[1]).toMatch(/escape|outside|\.\./)
    expect(packed[1]).toEqual([1, undefined])
    expect(entries.at(-1)?.body.toString()).not.toContain('/bmc/c0/')
  })

  test('a live archive is checked on its way: its digest and size are those of the scan of the same bytes', async () => {
    const file = await archive(tree)
    const settled: unknown[] = []
    const live = { body: createReadStream(file), maxBytes: 1024 ** 2, settle: (o: unknown) => settled.push(o) }
    const entries = await readTar(injectStream(of({ index: 3, live })))
    expect(entries.map(e => e.header.name)).toContain('ok.3')
    expect(settled).toEqual([{ summary: await scanMountArchive(file, { maxBytes: 1024 ** 2 }) }])
  })

  test('a live archive that fails part way through a file: the entry is completed with zeros, the mount dropped, the stream whole', async () => {
    const file = await archive([
      { name: './', type: 'directory', mtime: t },
      { name: 'big', type: 'file', mtime: t, body: 'y'.repeat(300_000) }
    ])
    const bytes = readFileSync(file)
    async function* cut(): AsyncGenerator<Buffer> {
      yield bytes.subarray(0, 100_000)
      throw new Error('connection reset by the cache service')
    }
    const settled: Outcome[] = []
    const live = { body: Readable.from(cut()), maxBytes: 1024 ** 2, settle: (o: Outcome) => settled.push(o) }
    const entries = await readTar(injectStream(of({ index: 0, live }, { index: 1, archivePath: await archive(tree) })))
    const big = entries.find(e => e.header.name === 'c0/big')
    expect(big?.body.length).toBe(300_000)
    expect(entries.map(e => e.header.name)).not.toContain('ok.0')
    expect(entries.map(e => e.header.name)).toContain('ok.1')
    expect(String(errorOf(settled[0]))).toMatch(/connection reset/)
  })

  test('a live archive over its size limit is dropped while it streams', async () => {
    const file = await archive([
      { name: './', type: 'directory', mtime: t },
      { name: 'big', type: 'file', mtime: t, body: 'y'.repeat(300_000) }
    ])
    const settled: Outcome[] = []
    const live = { body: createReadStream(file), maxBytes: 100_000, settle: (o: Outcome) => settled.push(o) }
    const entries = await readTar(injectStream(of({ index: 0, live })))
    expect(entries.map(e => e.header.name)).toEqual(['at.0', 'c0/big', 'fixups'])
    expect(String(errorOf(settled[0]))).toMatch(/limit/)
  })
})

describe('ReadyQueue', () => {
  test('first() waits for an item or the end; all() waits for the end', async () => {
    const q = new ReadyQueue<number>()
    const first = q.first()
    const all = q.all()
    q.push(1)
    expect(await first).toBe(1)
    q.push(2)
    q.end()
    expect(await all).toEqual([1, 2])
    const empty = new ReadyQueue<number>()
    empty.end()
    expect(await empty.first()).toBeUndefined()
    expect(() => q.push(3)).toThrow(/after end/)
  })
})
