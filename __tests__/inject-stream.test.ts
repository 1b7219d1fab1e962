import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buffer } from 'node:stream/consumers'

import { afterAll, describe, expect, test } from '@jest/globals'
import * as tar from 'tar-stream'

import { FIXUP_GROUP_PATHS, injectStream, type StreamMount } from '../src/archive/inject-stream.js'
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

async function* of(...mounts: StreamMount[]): AsyncIterable<StreamMount> {
  yield* mounts
}

describe('injectStream', () => {
  test('sends directories after their contents, under c<index>/, then the fix-up list', async () => {
    const entries = await readTar(injectStream(of({ index: 2, archivePath: await archive(tree) })))
    expect(entries.map(e => e.header.name)).toEqual(['c2/a/b/f', 'c2/a/b/', 'c2/a/l', 'c2/a/', 'c2/c', 'c2/h', 'c2/', 'fixups'])
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
    expect(entries.map(e => e.header.name)).toEqual(['c1/x', 'c1/', 'fixups'])
    expect(entries[1]?.header).toMatchObject({ uid: 0, gid: 0, mode: 0o755 })
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
    expect(names).toHaveLength(7)
    queue.push({ index: 1, archivePath: second })
    queue.end()
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) {
      const entry = r.value as { header: tar.Header; resume(): void }
      names.push(entry.header.name)
      entry.resume()
    }
    expect(names.slice(7)).toEqual(['c1/', 'fixups'])
  })

  test('an unsafe archive ends the stream with an error instead of sending it', async () => {
    const bad = await archive([{ name: '../escape', type: 'file', mtime: t, body: 'x' }])
    await expect(buffer(injectStream(of({ index: 0, archivePath: bad })))).rejects.toThrow(/escape|outside|\.\./)
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
