// Which zstd level to archive with, by measurement: `tar -c | zstd` at a few
// levels (and no compression) over a tree, the size of the output and the
// time to decompress it, and what compress + upload + download + decompress
// would cost per GiB at two network speeds.
//
//   npx tsx scripts/bench/compression.ts [--repeat N] [--json FILE] [--no-synthetic] DIR...
//
// Besides the given trees it measures two synthetic samples (--no-synthetic
// leaves them out): already compressed archives (gzip of random data, like
// .crate / .whl files) and text (JavaScript files of the repo's node_modules).
// bench.ts runs the same over its host tree with --compression.
//
// Level "3 (default)" runs zstd without a level, as @actions/cache does; the
// zstd CLI would then take ZSTD_CLEVEL from the environment, so every run
// here unsets it.
import { existsSync, realpathSync } from 'node:fs'
import { copyFile, lstat, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

import { median, q, sh } from './lib.js'

/** zstd levels measured; `default` is no level flag (zstd's 3), `none` is tar | cat. */
export const LEVELS = ['none', '1', 'default', '6', '10'] as const
export type Level = (typeof LEVELS)[number]

/** Network speeds of the estimate, MB/s (10^6 bytes). */
export const NETWORK_MBPS = [50, 200] as const

const MB = 1e6
const GIB = 1024 ** 3
const SAMPLE_BYTES = 64 * 1024 ** 2
const ZSTD = 'zstd -T0 --long=30 -q'
const NODE_MODULES = fileURLToPath(new URL('../../node_modules', import.meta.url))

export interface LevelResult {
  level: string
  compressSeconds: number
  compressedBytes: number
  /** 0 for `none`. */
  decompressSeconds: number
  /** Tar bytes per second through `tar -c | compressor`, in MB/s. */
  compressMBps: number
  /** Compressed bytes / tar bytes. */
  ratio: number
  /** Tar bytes per second out of `zstd -d`, in MB/s (none for `none`). */
  decompressMBps?: number
  /** compress + upload + download + decompress, seconds per GiB of tar, by network speed (MB/s). */
  secondsPerGiB: Record<string, number>
}

export interface CompressionResult {
  label: string
  dir: string
  /** Bytes of the tar stream of the tree. */
  inputBytes: number
  levels: LevelResult[]
}

function compressor(level: Level): string {
  if (level === 'none') return 'cat'
  return level === 'default' ? ZSTD : `${ZSTD} -${level}`
}

function levelLabel(level: Level): string {
  return level === 'default' ? '3 (default)' : level
}

/** One timed pass of `tar -c | compressor > out`, then `zstd -d` of the output. */
async function measureOnce(dir: string, level: Level, out: string): Promise<{ compress: number; decompress: number; bytes: number }> {
  try {
    const c = await sh(`unset ZSTD_CLEVEL\ntar -C ${q(dir)} -cf - . | ${compressor(level)} > ${q(out)}`)
    const bytes = (await stat(out)).size
    const d = level === 'none' ? undefined : await sh(`zstd -d --long=30 -q -c ${q(out)} > /dev/null`)
    return { compress: c.seconds, decompress: d?.seconds ?? 0, bytes }
  } finally {
    await rm(out, { force: true })
  }
}

function derive(level: Level, inputBytes: number, compress: number, decompress: number, bytes: number): LevelResult {
  const ratio = bytes / inputBytes
  const perGiB = GIB / inputBytes
  const secondsPerGiB = Object.fromEntries(NETWORK_MBPS.map(net => [String(net), (compress + decompress) * perGiB + (2 * ratio * GIB) / (net * MB)]))
  const result: LevelResult = {
    level: levelLabel(level),
    compressSeconds: compress,
    compressedBytes: bytes,
    decompressSeconds: decompress,
    compressMBps: inputBytes / compress / MB,
    ratio,
    secondsPerGiB
  }
  if (decompress > 0) result.decompressMBps = inputBytes / decompress / MB
  return result
}

/**
 * Every level over `dir` (medians of `repeat` passes). The compressed output
 * goes to a file in `workDir`, deleted after each pass.
 */
export async function measureCompression(dir: string, options: { label: string; workDir: string; repeat?: number }): Promise<CompressionResult> {
  const repeat = options.repeat ?? 1
  const out = join(options.workDir, `compression-${process.pid}.out`)
  // Untimed: the first read of the tree pays for the page cache.
  await sh(`tar -C ${q(dir)} -cf - . | cat > /dev/null`)
  let inputBytes = 0
  const levels: LevelResult[] = []
  for (const level of LEVELS) {
    const passes: Array<{ compress: number; decompress: number; bytes: number }> = []
    for (let i = 0; i < repeat; i++) passes.push(await measureOnce(dir, level, out))
    const bytes = (passes[passes.length - 1] as { bytes: number }).bytes
    // `none` runs first: its output is the tar stream itself.
    if (level === 'none') inputBytes = bytes
    levels.push(derive(level, inputBytes, median(passes.map(p => p.compress)), median(passes.map(p => p.decompress)), bytes))
  }
  return { label: options.label, dir, inputBytes, levels }
}

// ---------------------------------------------------------------------------
// Synthetic samples

/** ~`bytes` of gzip'ed random data in files of mixed sizes, named like package archives. */
export async function makeCompressedSample(dir: string, bytes = SAMPLE_BYTES): Promise<void> {
  await mkdir(dir, { recursive: true })
  const sizes = [8, 32, 128, 512, 2048].map(k => k * 1024)
  const names = ['crate', 'whl', 'tgz']
  const lines: string[] = []
  for (let i = 0, total = 0; total < bytes; i++) {
    const size = sizes[i % sizes.length] as number
    lines.push(`head -c ${size} /dev/urandom | gzip -c > ${q(join(dir, `pkg-${i}.${names[i % names.length]}`))}`)
    total += size
  }
  await sh(lines.join('\n'))
}

/** The regular `.js` files under `root`, sorted, with their sizes. */
async function jsFiles(root: string): Promise<Array<{ path: string; size: number }>> {
  const names = (await readdir(root, { recursive: true })).filter(n => n.endsWith('.js')).sort()
  const files: Array<{ path: string; size: number }> = []
  for (const name of names) {
    const st = await lstat(join(root, name))
    if (st.isFile() && st.size > 0) files.push({ path: name, size: st.size })
  }
  return files
}

/** ~`bytes` of JavaScript: copies of the files under `source` (node_modules), repeated only if it holds less. */
export async function makeTextSample(dir: string, source = NODE_MODULES, bytes = SAMPLE_BYTES): Promise<{ copies: number }> {
  const files = await jsFiles(source)
  if (files.length === 0) throw new Error(`no .js files under ${source}`)
  let total = 0
  let copies = 0
  for (; total < bytes; copies++) {
    for (const f of files) {
      if (total >= bytes) break
      const to = join(dir, `copy-${copies}`, f.path)
      await mkdir(dirname(to), { recursive: true })
      await copyFile(join(source, f.path), to)
      total += f.size
    }
  }
  return { copies }
}

/** Both synthetic samples, generated under `workDir`, measured, deleted. */
export async function measureSyntheticSamples(workDir: string, repeat = 1): Promise<CompressionResult[]> {
  const root = join(workDir, 'compression-samples')
  try {
    const packed = join(root, 'compressed')
    await makeCompressedSample(packed)
    const text = join(root, 'text')
    const { copies } = await makeTextSample(text)
    const textLabel = `text: node_modules .js${copies > 1 ? ` (${copies} copies: long-range matching finds the repeats)` : ''}`
    return [
      await measureCompression(packed, { label: 'already compressed: gzip of random data', workDir, repeat }),
      await measureCompression(text, { label: textLabel, workDir, repeat })
    ]
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------
// Table

export function compressionTable(results: CompressionResult[]): string {
  const fmt = (n: number | undefined, digits: number): string => (n === undefined ? '-' : n.toFixed(digits))
  const header = ['level', 'compress MB/s', 'ratio', 'decompress MB/s', ...NETWORK_MBPS.map(n => `s/GiB @${n} `)]
  const width = Math.max(...results.flatMap(r => r.levels.map(l => l.level.length)), 5)
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(width) : c.padStart((header[i] as string).length))).join('  ')
  const lines = [
    '',
    `Compression: tar -c | zstd -T0 --long=30 -<level> to a file, then zstd -d --long=30 of it (level "none": tar -c | cat). MB = 10^6 bytes of tar.`,
    `s/GiB @N: compress + upload + download (compressed size at N MB/s each way) + decompress, per GiB of tar; * = least of its sample.`,
    `"3 (default)" is zstd without a level, as @actions/cache runs it (ZSTD_CLEVEL unset${process.env.ZSTD_CLEVEL ? `; this shell has ZSTD_CLEVEL=${process.env.ZSTD_CLEVEL}` : ''}).`
  ]
  for (const r of results) {
    const best = NETWORK_MBPS.map(n => Math.min(...r.levels.map(l => l.secondsPerGiB[String(n)] as number)))
    lines.push(
      '',
      `${r.label}: ${fmt(r.inputBytes / 1024 ** 2, 0)} MiB of tar`,
      line(header),
      line(header.map((h, i) => '-'.repeat(i === 0 ? width : h.length)))
    )
    for (const l of r.levels) {
      const est = NETWORK_MBPS.map((n, i) => {
        const s = l.secondsPerGiB[String(n)] as number
        return `${s.toFixed(1)}${s === best[i] ? '*' : ' '}`
      })
      lines.push(line([l.level, fmt(l.compressMBps, 0), fmt(l.ratio, 3), fmt(l.decompressMBps, 0), ...est]))
    }
  }
  return lines.join('\n')
}

// ---------------------------------------------------------------------------
// Alone: npx tsx scripts/bench/compression.ts DIR...

interface CliOptions {
  dirs: string[]
  repeat: number
  json?: string
  synthetic: boolean
}

function parseCli(argv: string[]): CliOptions {
  const opts: CliOptions = { dirs: [], repeat: 1, synthetic: true }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '--repeat') {
      opts.repeat = Number(argv[++i])
      if (!Number.isInteger(opts.repeat) || opts.repeat <= 0) throw new Error('--repeat needs a positive integer')
    } else if (arg === '--json') {
      const file = argv[++i]
      if (file === undefined) throw new Error('--json needs a value')
      opts.json = file
    } else if (arg === '--no-synthetic') opts.synthetic = false
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: compression.ts [--repeat N] [--json FILE] [--no-synthetic] DIR...')
      process.exit(0)
    } else if (arg.startsWith('--')) throw new Error(`unknown argument ${arg}`)
    else opts.dirs.push(resolve(arg))
  }
  if (opts.dirs.length === 0 && !opts.synthetic) throw new Error('nothing to measure: give a DIR or drop --no-synthetic')
  return opts
}

async function cli(argv: string[]): Promise<void> {
  const opts = parseCli(argv)
  const work = await mkdtemp(join(tmpdir(), 'bmc-compression-'))
  const results: CompressionResult[] = []
  try {
    for (const dir of opts.dirs) results.push(await measureCompression(dir, { label: dir, workDir: work, repeat: opts.repeat }))
    if (opts.synthetic) results.push(...(await measureSyntheticSamples(work, opts.repeat)))
  } finally {
    await rm(work, { recursive: true, force: true })
  }
  console.log(compressionTable(results))
  if (opts.json) {
    await writeFile(opts.json, `${JSON.stringify({ compression: results }, null, 2)}\n`)
    console.log(`\nJSON written to ${opts.json}`)
  }
}

/** Whether this file is the script node was started with (not imported by bench.ts). */
function isEntry(): boolean {
  const entry = process.argv[1]
  return entry !== undefined && existsSync(entry) && realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url))
}

if (isEntry()) {
  cli(process.argv.slice(2)).catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
}
