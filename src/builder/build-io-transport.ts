import { createWriteStream } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import { injectStream } from '../archive/inject-stream.js'
import { forEachEntry } from '../archive/tar-io.js'
import { ArchiveError } from '../errors.js'
import { log } from '../log.js'
import { startProgress, type Progress } from '../progress.js'
import type { CommandRunner } from './command.js'
import { dockerfileContext } from './context-tar.js'
import { EXPORT_FILE, extractDockerfile, injectDockerfile, STREAM_FILE } from './dockerfile.js'
import { buildDeadline } from './deadline.js'
import { runBuild } from './engine.js'
import { readInjectResult, type InjectResult } from './manifests.js'
import { receiveExtract } from './receive.js'
import { PackedMounts, type Extracted, type ExtractJob, type Injected, type InjectJob, type Phase, type Transport } from './transport.js'

/**
 * The route every builder has: the build's own channels, no network. Inject
 * writes the inject stream as one file of a directory build context (one
 * file for BuildKit to transfer) that the RUN unpacks from a bind mount;
 * extract has the RUN write the extract stream into one file that the build
 * exports as its result. Nothing to overlap: inject starts after every
 * download.
 */
export class BuildIoTransport implements Transport {
  readonly route = 'build-io' as const
  readonly overlapsDownloads = false

  label(phase: Phase): string {
    return phase === 'inject' ? 'build context' : 'build exporter'
  }

  through(phase: Phase): string {
    return phase === 'inject' ? 'the build context' : "the build's exporter"
  }

  /** The last route: there is nothing to fall back to. */
  classify(_error: unknown): 'fallback' | 'final' {
    return 'final'
  }

  async inject(run: CommandRunner, job: InjectJob): Promise<Injected> {
    const ready = await job.ready.all()
    const byIndex = new Set(ready.map(m => m.index))
    const mounts = job.mounts.filter(m => byIndex.has(m.index))
    if (mounts.length === 0) return { injected: [], dropped: new Map(), manifests: new Map(), listings: new Map() }
    const dockerfile = injectDockerfile(job.image, mounts, 'context')
    log.debug(`Inject Dockerfile:\n${dockerfile}`)
    const dir = await mkdtemp(join(process.env.RUNNER_TEMP || tmpdir(), 'buildkit-mount-cache-inject-'))
    let received: InjectResult = { manifests: new Map(), listings: new Map() }
    const packed = new PackedMounts()
    // Counts what goes into the build context; the build then reads it in one transfer.
    const progress = startProgress('inject')
    try {
      await writeFile(join(dir, 'Dockerfile'), dockerfile)
      await pipeline(counted(injectStream(Readable.from(ready), packed.record), progress), createWriteStream(join(dir, STREAM_FILE)))
      await runBuild(run, job.engine, {
        context: { dir },
        output: async out => {
          received = await readInjectResult(out)
        },
        onLine: line => log.debug(line),
        buildArgs: job.buildArgs,
        deadline: buildDeadline(job.bytes)
      })
    } finally {
      progress.stop()
      await rm(dir, { recursive: true, force: true })
    }
    return packed.result(received)
  }

  async extract(run: CommandRunner, job: ExtractJob): Promise<Extracted> {
    const dockerfile = extractDockerfile(job.image, job.mounts, 'export')
    log.debug(`Extract Dockerfile:\n${dockerfile}`)
    let received: Extracted | undefined
    const progress = startProgress('extract')
    try {
      await runBuild(run, job.engine, {
        context: dockerfileContext(dockerfile, job.contextFiles),
        output: async out =>
          forEachEntry(counted(out, progress), async (header, body) => {
            if (header.name.replace(/^\.?\//, '') !== EXPORT_FILE || received) return
            received = await receiveExtract(Readable.from(body), job.targets)
          }),
        onLine: line => log.debug(line),
        buildArgs: job.buildArgs,
        deadline: buildDeadline(job.bytes)
      })
    } finally {
      progress.stop()
    }
    if (!received) throw new ArchiveError('ARCHIVE_UNEXPECTED', `the extract build's output has no ${EXPORT_FILE}`)
    return received
  }
}

/** `stream`, with every byte read from it counted by `progress`. */
function counted<S extends Readable>(stream: S, progress: Progress): S {
  stream.on('data', (chunk: Buffer) => progress.add(chunk.length))
  return stream
}
