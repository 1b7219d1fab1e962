// Where the action's own share of an extract goes, measured in-process on a
// synthetic mount stream (no engine): reading the stream, parsing it as tar,
// hashing the content, and the whole split (parse, guard, hash, re-pack,
// write one archive per mount). The differences between the rows are the
// cost of each layer.
//
//   npx tsx scripts/bench/split-profile.ts [--size-mib 256] [--files 5000]
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { Writable, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import * as tar from 'tar-stream'

import { forEachEntry } from '../../src/archive/tar-io.js'
import { splitExport } from '../../src/archive/split.js'

interface Options {
  sizeMiB: number
  files: number
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { sizeMiB: 256, files: 5000 }
  for (let i = 0; i < argv.length; i++) {
    const value = Number(argv[i + 1])
    if (argv[i] === '--size-mib' && value > 0) opts.sizeMiB = value
    else if (argv[i] === '--files' && value > 0) opts.files = value
    else throw new Error(`usage: split-profile.ts [--size-mib N] [--files N] (at ${argv[i]})`)
    i++
  }
  return opts
}

/** A stream shaped like the extract build's: three mount directories, one large file each, the rest small files. */
async function writeStream(path: string, opts: Options): Promise<number> {
  const pack = tar.pack()
  const written = pipeline(pack as unknown as Readable, createWriteStream(path))
  const total = opts.sizeMiB * 1024 ** 2
  const large = Math.floor(total / 2 / 3)
  const small = Math.max(1, Math.floor(total / 2 / opts.files))
  const chunk = randomBytes(1024 ** 2)
  const body = (size: number): Buffer =>
    size <= chunk.length ? chunk.subarray(0, size) : Buffer.concat(Array(Math.ceil(size / chunk.length)).fill(chunk)).subarray(0, size)
  const add = (header: Partial<tar.Header> & { name: string }, data?: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      const cb = (error?: Error | null): void => (error ? reject(error) : resolve())
      if (data) pack.entry(header, data, cb)
      else (pack.entry(header, cb) as unknown as { end(): void }).end()
    })
  const mtime = new Date(1_700_000_000_000)
  for (let m = 0; m < 3; m++) {
    await add({ name: `c${m}/`, type: 'directory', mode: 0o755, mtime })
    await add({ name: `c${m}/large.bin`, type: 'file', mode: 0o644, mtime }, body(large))
    for (let d = 0; d < Math.ceil(opts.files / 3 / 100); d++) {
      await add({ name: `c${m}/d${d}/`, type: 'directory', mode: 0o755, uid: 1000, gid: 1000, mtime })
      for (let f = 0; f < 100 && d * 100 + f < opts.files / 3; f++) {
        await add({ name: `c${m}/d${d}/f${f}`, type: 'file', mode: 0o644, uid: 1000, gid: 1000, mtime }, body(small))
      }
    }
  }
  pack.finalize()
  await written
  return statSync(path).size
}

async function time(label: string, bytes: number, run: () => Promise<void>): Promise<[string, number]> {
  const started = performance.now()
  await run()
  const seconds = (performance.now() - started) / 1000
  console.log(`${label.padEnd(52)} ${seconds.toFixed(2).padStart(6)} s  ${(bytes / 1e6 / seconds).toFixed(0).padStart(5)} MB/s`)
  return [label, seconds]
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2))
  const work = mkdtempSync(join(tmpdir(), 'bmc-split-profile-'))
  try {
    const source = join(work, 'stream.tar')
    const bytes = await writeStream(source, opts)
    console.log(`stream: ${(bytes / 1024 ** 2).toFixed(0)} MiB, ${opts.files} small files + 3 large in 3 mounts (read from the page cache)\n`)
    const discard = (): Writable => new Writable({ write: (_c, _e, cb) => cb() })
    await time('read the stream', bytes, () => pipeline(createReadStream(source), discard()))
    await time('+ parse as tar (tar-stream)', bytes, () => forEachEntry(createReadStream(source), async () => undefined))
    await time('+ hash every content byte (sha256)', bytes, () =>
      forEachEntry(createReadStream(source), async (_h, body) => {
        const hash = createHash('sha256')
        for await (const chunk of body) hash.update(chunk)
        hash.digest()
      })
    )
    await time('+ write the stream to one file', bytes, () => pipeline(createReadStream(source), createWriteStream(join(work, 'copy.tar'))))
    await time('the split: parse, guard, digest, re-pack, write 3', bytes, async () => {
      await splitExport(
        createReadStream(source),
        [0, 1, 2].map(m => ({ dir: `c${m}`, archivePath: join(work, `m${m}.tar`) }))
      )
    })
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
