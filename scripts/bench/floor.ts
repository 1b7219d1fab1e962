// The floor: the least work that moves the same tree, on the host and
// through one minimal build each way. Every variant is timed from spawn to
// exit of its shell pipeline.
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'

import { LOOPBACK, type StreamReach } from '../../src/builder/route.js'
import { cacheFlag, type BenchMount } from './dataset.js'
import { q, sh, stepSeconds, type StepKind } from './lib.js'

export interface FloorResult {
  name: string
  description: string
  seconds: number
  steps?: Record<StepKind, number>
  /** Bytes of the exported stream (extract variants with the default sink). */
  bytes?: number
}

const BUILD = 'docker buildx build --progress=plain --network=none --provenance=false'
/** The stream variants' build: the network in which a RUN reaches the listener (host for 127.0.0.1 on the docker driver). */
const streamBuild = (reach: StreamReach): string => `docker buildx build --progress=plain --network=${reach.network} --provenance=false`

/**
 * A listener for the stream variants, on the address where a RUN of this
 * builder reaches the bench (127.0.0.1, or a docker-container builder's
 * gateway: the action's own route, src/builder/reach.ts): the first
 * connection goes to `serve`; `done` settles when it has been served.
 */
async function listen(host: string, serve: (socket: Socket) => Promise<void>): Promise<{ port: number; done: Promise<void>; close(): void }> {
  let resolveDone!: () => void
  let rejectDone!: (e: unknown) => void
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve
    rejectDone = reject
  })
  done.catch(() => undefined)
  const server = createServer(socket => {
    server.close()
    serve(socket).then(resolveDone, rejectDone)
  })
  await new Promise<void>(resolve => server.listen(0, host, resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return { port: address.port, done, close: () => server.close() }
}

/** Host: the tree through `tar -c | cat`, and through the compression @actions/cache adds on save. */
export async function hostFloors(dataDir: string): Promise<FloorResult[]> {
  const plain = await sh(`tar -C ${q(dataDir)} -cf - . | cat > /dev/null`)
  const zstd = await sh(`tar -C ${q(dataDir)} -cf - . | zstd -T0 --long=30 -q -c | cat > /dev/null`)
  return [
    { name: 'host-tar', description: 'host: tar -c | cat > /dev/null', seconds: plain.seconds },
    { name: 'host-tar-zstd', description: 'host: tar -c | zstd -T0 --long=30 (what @actions/cache adds on save)', seconds: zstd.seconds }
  ]
}

/**
 * Extract variants, all reading the mounts under their real ids (read-only)
 * and streaming the result tar to the sink:
 *  scratch-copy     RUN cp -a mounts -> /out/<name>; FROM scratch + COPY --from; -o type=tar
 *  stage-export     the same RUN, exporting the copying stage itself (busybox rootfs included)
 *  tar-scratch      RUN tar -c of all mounts into /out/all.tar; FROM scratch + COPY --from
 *  tar-stage        the same RUN, exporting that stage itself
 *  tar-stream       RUN tar -c of all mounts | nc HOST PORT to a listener of the bench
 *                   that counts the bytes (HOST and the build's network: the builder's
 *                   stream reach); nothing exported
 */
export const EXTRACT_VARIANTS = ['scratch-copy', 'stage-export', 'tar-scratch', 'tar-stage', 'tar-stream'] as const
export type ExtractVariant = (typeof EXTRACT_VARIANTS)[number]

export function extractFloorDockerfile(variant: ExtractVariant, image: string, mounts: BenchMount[], host = LOOPBACK.host): string {
  const flags = mounts.map(m => cacheFlag(m, { extra: ['readonly'] }))
  const root = mounts[0]?.target.replace(/\/[^/]+$/, '') ?? '/'
  const copy = ['mkdir -p /out', ...mounts.map(m => `mkdir -p /out/${m.name} && cp -a ${m.target}/. /out/${m.name}/`)]
  const tar = ['mkdir -p /out', `tar -cf /out/all.tar -C ${root} ${mounts.map(m => m.name).join(' ')}`]
  const stream = ['set -o pipefail', `tar -c -C ${root} ${mounts.map(m => m.name).join(' ')} | nc ${host} "$PORT"`]
  const commands = variant === 'tar-stream' ? stream : variant.startsWith('tar') ? tar : copy
  const args = variant === 'tar-stream' ? ['ARG PORT'] : []
  const lines = [`FROM ${image} AS x`, 'ARG NONCE', ...args, `RUN ${flags.join(' \\\n    ')} \\\n    ${commands.join(' \\\n    && ')}`]
  if (variant === 'scratch-copy' || variant === 'tar-scratch') lines.push('FROM scratch', 'COPY --from=x /out /')
  return `${lines.join('\n')}\n`
}

/**
 * Runs one extract variant with its output piped to `sink` (a shell command
 * reading stdin; the default `wc -c` costs what `cat > /dev/null` costs and
 * tells whether the mounts still hold the data).
 */
export async function extractFloor(
  variant: ExtractVariant,
  image: string,
  mounts: BenchMount[],
  workDir: string,
  sink = 'wc -c',
  reach: StreamReach = LOOPBACK
): Promise<FloorResult> {
  const ctx = join(workDir, `ctx-extract-${variant}`)
  await mkdir(ctx, { recursive: true })
  await writeFile(join(ctx, 'Dockerfile'), extractFloorDockerfile(variant, image, mounts, reach.host))
  if (variant === 'tar-stream') {
    let bytes = 0
    const listener = await listen(reach.host, async socket => {
      for await (const chunk of socket) bytes += (chunk as Buffer).length
    })
    try {
      const r = await sh(
        `${streamBuild(reach)} --build-arg NONCE=${randomUUID()} --build-arg PORT=${listener.port} --output type=cacheonly ${q(ctx)}`
      )
      await listener.done
      return { name: `extract-${variant}`, description: `extract floor: ${variant}`, seconds: r.seconds, steps: stepSeconds(r.stderr), bytes }
    } finally {
      listener.close()
    }
  }
  const r = await sh(`${BUILD} --build-arg NONCE=${randomUUID()} --output type=tar,dest=- ${q(ctx)} | ${sink}`)
  const result: FloorResult = {
    name: `extract-${variant}`,
    description: `extract floor: ${variant}`,
    seconds: r.seconds,
    steps: stepSeconds(r.stderr)
  }
  if (sink === 'wc -c') result.bytes = Number(r.stdout.trim())
  return result
}

/**
 * Inject variants into fresh cache ids (`<id>-<suffix>`, same uid/gid options),
 * with a tar context on stdin (ownership kept) and no exported result:
 *  cp-a      context = the host tree; RUN --mount=type=bind,source=data/<name> ... cp -a into each mount
 *  tar-x     context = one tar file per mount (as the action holds after restore); RUN tar -x into each mount
 *  tar-stream  no context; RUN nc HOST PORT | tar -x (HOST and the build's network: the
 *            builder's stream reach), the bench's listener sends `tar -c` of the host tree
 */
export const INJECT_VARIANTS = ['cp-a', 'tar-x', 'tar-stream'] as const
export type InjectVariant = (typeof INJECT_VARIANTS)[number]

export function injectFloorDockerfile(variant: InjectVariant, image: string, mounts: BenchMount[], idSuffix: string, host = LOOPBACK.host): string {
  const cache = mounts.map(m => cacheFlag(m, { id: `${m.id}-${idSuffix}` }))
  const root = mounts[0]?.target.replace(/\/[^/]+$/, '') ?? '/'
  const binds =
    variant === 'cp-a'
      ? mounts.map(m => `--mount=type=bind,source=data/${m.name},target=/src/${m.name}`)
      : variant === 'tar-x'
        ? ['--mount=type=bind,source=.,target=/src']
        : []
  const commands =
    variant === 'cp-a'
      ? mounts.map(m => `cp -a /src/${m.name}/. ${m.target}/`)
      : variant === 'tar-x'
        ? mounts.map(m => `tar -xf /src/${m.name}.tar -C ${m.target}`)
        : ['set -o pipefail', `echo go | nc ${host} "$PORT" | tar -x -C ${root}`]
  const args = variant === 'tar-stream' ? ['ARG PORT'] : []
  return [`FROM ${image}`, 'ARG NONCE', ...args, `RUN ${[...cache, ...binds].join(' \\\n    ')} \\\n    ${commands.join(' \\\n    && ')}`, ''].join(
    '\n'
  )
}

/**
 * `contextDir` holds the context: for cp-a the host tree under data/<name>,
 * for tar-x the files <name>.tar; for tar-stream the host tree under
 * data/<name> that the listener streams. The Dockerfile is written into it.
 */
export async function injectFloor(
  variant: InjectVariant,
  image: string,
  mounts: BenchMount[],
  contextDir: string,
  idSuffix: string,
  reach: StreamReach = LOOPBACK
): Promise<FloorResult> {
  await writeFile(join(contextDir, 'Dockerfile'), injectFloorDockerfile(variant, image, mounts, idSuffix, reach.host))
  if (variant === 'tar-stream') {
    const listener = await listen(reach.host, async socket => {
      const tar = spawn('tar', ['-C', join(contextDir, 'data'), '-cf', '-', ...mounts.map(m => m.name)], { stdio: ['ignore', 'pipe', 'inherit'] })
      const exited = new Promise<number | null>(resolve => tar.once('close', resolve))
      await pipeline(tar.stdout, socket)
      if ((await exited) !== 0) throw new Error('host tar -c failed')
    })
    try {
      const r = await sh(
        `tar -C ${q(contextDir)} -cf - Dockerfile | ${streamBuild(reach)} --build-arg NONCE=${randomUUID()} --build-arg PORT=${listener.port} --output type=cacheonly -`
      )
      await listener.done
      return { name: `inject-${variant}`, description: `inject floor: ${variant}`, seconds: r.seconds, steps: stepSeconds(r.stderr) }
    } finally {
      listener.close()
    }
  }
  const entries = variant === 'cp-a' ? 'Dockerfile data' : ['Dockerfile', ...mounts.map(m => `${m.name}.tar`)].join(' ')
  const r = await sh(`tar -C ${q(contextDir)} -cf - ${entries} | ${BUILD} --build-arg NONCE=${randomUUID()} --output type=cacheonly -`)
  return { name: `inject-${variant}`, description: `inject floor: ${variant}`, seconds: r.seconds, steps: stepSeconds(r.stderr) }
}
