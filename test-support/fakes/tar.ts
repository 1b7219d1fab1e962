import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'

import * as tar from 'tar-stream'

/** A raw tar entry: any header (tests craft hostile ones too) and an optional body. */
export type RawEntry = Partial<tar.Header> & { name: string; body?: string | Buffer }

/** Builds a tar archive in memory from raw headers, without validating them. */
export async function makeTar(entries: RawEntry[]): Promise<Buffer> {
  const pack = tar.pack()
  const out = buffer(pack as unknown as Readable)
  for (const { body, ...header } of entries) {
    // tar-stream replaces a falsy mode by a default; a high bit keeps 0000 (it is masked off on read).
    if (header.mode === 0) header.mode = 0o10000
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve())
      if (body !== undefined) pack.entry(header, body, cb)
      else (pack.entry(header, cb) as unknown as { end(): void }).end()
    })
  }
  pack.finalize()
  return out
}

export interface ReadEntry {
  header: tar.Header
  body: Buffer
}

/** Reads every entry of a tar stream into memory; rejects when the stream is not a tar. */
export async function readTar(data: Buffer | Readable): Promise<ReadEntry[]> {
  const extract = tar.extract()
  const source = Buffer.isBuffer(data) ? Readable.from([data]) : data
  source.on('error', error => extract.destroy(error))
  source.pipe(extract as unknown as NodeJS.WritableStream)
  const out: ReadEntry[] = []
  for await (const entry of extract) {
    const chunks: Buffer[] = []
    for await (const c of entry) chunks.push(c as Buffer)
    out.push({ header: entry.header, body: Buffer.concat(chunks) })
  }
  return out
}
