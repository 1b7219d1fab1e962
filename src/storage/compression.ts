import { accessSync, constants, createReadStream, createWriteStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import * as zlib from 'node:zlib'

import { runCommand, type CommandRunner } from '../builder/command.js'
import { InputError } from '../errors.js'
import { metered } from './progress.js'

/**
 * How an entry's archive is compressed in a self-hosted store. Mount
 * archives are plain tars (the builder exports them that way), so the
 * stores compress them on the way in and record the codec in the entry, so
 * that a reader on another machine picks the right decoder.
 */
export type Codec = 'zstd' | 'gzip' | 'none'

export const CODECS: readonly Codec[] = ['zstd', 'gzip', 'none']

/** File name suffix of an archive compressed with `codec`. */
export const CODEC_SUFFIX: Record<Codec, string> = { zstd: '.tar.zst', gzip: '.tar.gz', none: '.tar' }

/** Bytes of each sample the compressibility probe reads (start, middle and end of the archive). */
const PROBE_BYTES = 4 * 1024 ** 2
/** Samples that deflate to more than this fraction of their size are stored as they are. */
const INCOMPRESSIBLE = 0.9

/**
 * The codec for one archive: `none` when samples of it barely compress
 * (caches of downloaded .crate, .whl, .tgz or .jar files, which are
 * compressed already), else the default codec. Measured with `npm run bench
 * --compression`: on already-compressed data zstd only costs time (ratio
 * 1.00, several times slower than storing), while on source-like text it
 * shrinks the archive 7-8× and pays for itself on any network.
 */
export async function chooseCodec(path: string): Promise<Codec> {
  const handle = await open(path, 'r')
  try {
    const { size } = await handle.stat()
    const offsets = size <= 3 * PROBE_BYTES ? [0] : [0, Math.floor(size / 2), size - PROBE_BYTES]
    let raw = 0
    let packed = 0
    for (const offset of offsets) {
      const buffer = Buffer.alloc(Math.min(PROBE_BYTES, size))
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset)
      if (bytesRead === 0) continue
      raw += bytesRead
      packed += zlib.deflateRawSync(buffer.subarray(0, bytesRead), { level: 1 }).length
    }
    return raw > 0 && packed / raw > INCOMPRESSIBLE ? 'none' : defaultCodec()
  } finally {
    await handle.close()
  }
}

export function parseCodec(text: string, input: string): Codec {
  if ((CODECS as readonly string[]).includes(text)) return text as Codec
  throw new InputError(input, `compression must be one of ${CODECS.join(', ')}, got "${text}"`)
}

/** Whether an executable called `name` is on PATH. */
export function onPath(name: string, env: NodeJS.ProcessEnv = process.env): boolean {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    try {
      accessSync(join(dir, name), constants.X_OK)
      return true
    } catch {
      // not here
    }
  }
  return false
}

let zstdCli: boolean | undefined

/** Whether the zstd CLI is on PATH (looked up once). */
export function zstdOnPath(): boolean {
  zstdCli ??= onPath('zstd')
  return zstdCli
}

/** zstd when its CLI is on PATH (fast, multi-threaded), else gzip, which node:zlib always has. */
export function defaultCodec(): Codec {
  return zstdOnPath() ? 'zstd' : 'gzip'
}

/** node:zlib's zstd (Node 22.15+), used to read zstd entries where the CLI is missing. */
function zlibZstdDecompress(): (() => Transform) | undefined {
  const z = zlib as unknown as { createZstdDecompress?: () => Transform }
  return z.createZstdDecompress
}

/**
 * Compresses the file at `path` and hands the compressed stream to
 * `consume`, which must read it to the end (write it to a file, upload it).
 * `meter` sees the uncompressed bytes as they are read, for progress lines.
 */
export async function compressFile(
  path: string,
  codec: Codec,
  consume: (compressed: Readable) => Promise<unknown>,
  meter?: Transform,
  run: CommandRunner = runCommand
): Promise<void> {
  const source = meter ? metered(createReadStream(path), meter) : createReadStream(path)
  if (codec === 'none') {
    try {
      await consume(source)
    } finally {
      source.destroy()
    }
    return
  }
  if (codec === 'zstd') {
    // A consumer that gives up must close the pipe, or zstd blocks on a full pipe forever;
    // its own error (e.g. an S3 precondition) is the one worth reporting.
    let failure: { error: unknown } | undefined
    const stdout = async (compressed: Readable): Promise<void> => {
      try {
        await consume(compressed)
      } catch (error) {
        failure = { error }
        compressed.destroy()
        throw error
      }
    }
    await run('zstd', ['-q', '-c', '-T0', '-3'], { stdin: source, stdout }).catch((error: unknown) => {
      throw failure ? failure.error : error
    })
    return
  }
  const gzip = zlib.createGzip()
  const feeding = pipeline(source, gzip)
  try {
    await consume(gzip)
  } catch (error) {
    gzip.destroy()
    await feeding.catch(() => undefined)
    throw error
  }
  await feeding
}

/** Decompresses `source` into the file at `dest` (created or truncated). */
export async function decompressToFile(source: Readable, codec: Codec, dest: string, run: CommandRunner = runCommand): Promise<void> {
  await pipeline(decodeStream(source, codec, run), createWriteStream(dest))
}

/**
 * `source` decoded as a stream, for a consumer that takes the bytes as they
 * come. The result fails, rather than ends, when `source` failed (a digest
 * trailer that does not match fails it at its very end), even where a
 * decoder would have seen only an early end of its input.
 */
export function decodeStream(source: Readable, codec: Codec, run: CommandRunner = runCommand): Readable {
  if (codec === 'none') return source
  const sourceDone = new Promise<void>((resolve, reject) => {
    source.once('end', resolve)
    source.once('error', reject)
    source.once('close', () => (source.readableEnded ? resolve() : reject(source.errored ?? new Error('the entry stream was closed early'))))
  })
  sourceDone.catch(() => undefined)
  const gate = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      callback(null, chunk)
    },
    flush(callback) {
      sourceDone.then(() => callback(), callback)
    }
  })
  const fallback = codec === 'zstd' ? zlibZstdDecompress() : undefined
  if (codec === 'gzip' || (codec === 'zstd' && fallback && !zstdOnPath())) {
    const decoder = codec === 'gzip' ? zlib.createGunzip() : (fallback as () => Transform)()
    pipeline(source, decoder, gate).catch((error: unknown) => gate.destroy(error as Error))
    return gate
  }
  if (!zstdOnPath()) {
    source.destroy()
    gate.destroy(new Error('the entry is zstd-compressed but zstd is not on PATH (install zstd)'))
    return gate
  }
  run('zstd', ['-q', '-d', '-c'], { stdin: source, stdout: async out => pipeline(out, gate) }).catch((error: unknown) => {
    source.destroy()
    gate.destroy(error as Error)
  })
  return gate
}
