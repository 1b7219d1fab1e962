// The floor: the least work that moves the same tree, on the host and
// through one minimal build each way. Every variant is timed from spawn to
// exit of its shell pipeline.
import { randomUUID } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

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
 */
export const EXTRACT_VARIANTS = ['scratch-copy', 'stage-export', 'tar-scratch', 'tar-stage'] as const
export type ExtractVariant = (typeof EXTRACT_VARIANTS)[number]

export function extractFloorDockerfile(variant: ExtractVariant, image: string, mounts: BenchMount[]): string {
  const flags = mounts.map(m => cacheFlag(m, { extra: ['readonly'] }))
  const root = mounts[0]?.target.replace(/\/[^/]+$/, '') ?? '/'
  const copy = ['mkdir -p /out', ...mounts.map(m => `mkdir -p /out/${m.name} && cp -a ${m.target}/. /out/${m.name}/`)]
  const tar = ['mkdir -p /out', `tar -cf /out/all.tar -C ${root} ${mounts.map(m => m.name).join(' ')}`]
  const commands = variant.startsWith('tar') ? tar : copy
  const lines = [`FROM ${image} AS x`, 'ARG NONCE', `RUN ${flags.join(' \\\n    ')} \\\n    ${commands.join(' \\\n    && ')}`]
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
  sink = 'wc -c'
): Promise<FloorResult> {
  const ctx = join(workDir, `ctx-extract-${variant}`)
  await mkdir(ctx, { recursive: true })
  await writeFile(join(ctx, 'Dockerfile'), extractFloorDockerfile(variant, image, mounts))
  const r = await sh(`${BUILD} --build-arg NONCE=${randomUUID()} --output type=tar,dest=- ${q(ctx)} | ${sink}`)
  const result: FloorResult = { name: `extract-${variant}`, description: `extract floor: ${variant}`, seconds: r.seconds, steps: stepSeconds(r.stderr) }
  if (sink === 'wc -c') result.bytes = Number(r.stdout.trim())
  return result
}

/**
 * Inject variants into fresh cache ids (`<id>-<suffix>`, same uid/gid options),
 * with a tar context on stdin (ownership kept) and no exported result:
 *  cp-a      context = the host tree; RUN --mount=type=bind,source=data/<name> ... cp -a into each mount
 *  tar-x     context = one tar file per mount (as the action holds after restore); RUN tar -x into each mount
 */
export const INJECT_VARIANTS = ['cp-a', 'tar-x'] as const
export type InjectVariant = (typeof INJECT_VARIANTS)[number]

export function injectFloorDockerfile(variant: InjectVariant, image: string, mounts: BenchMount[], idSuffix: string): string {
  const cache = mounts.map(m => cacheFlag(m, { id: `${m.id}-${idSuffix}` }))
  const binds =
    variant === 'cp-a'
      ? mounts.map(m => `--mount=type=bind,source=data/${m.name},target=/src/${m.name}`)
      : ['--mount=type=bind,source=.,target=/src']
  const commands =
    variant === 'cp-a'
      ? mounts.map(m => `cp -a /src/${m.name}/. ${m.target}/`)
      : mounts.map(m => `tar -xf /src/${m.name}.tar -C ${m.target}`)
  return [`FROM ${image}`, 'ARG NONCE', `RUN ${[...cache, ...binds].join(' \\\n    ')} \\\n    ${commands.join(' \\\n    && ')}`, ''].join('\n')
}

/**
 * `contextDir` holds the context: for cp-a the host tree under data/<name>,
 * for tar-x the files <name>.tar. The Dockerfile is written into it.
 */
export async function injectFloor(variant: InjectVariant, image: string, mounts: BenchMount[], contextDir: string, idSuffix: string): Promise<FloorResult> {
  await writeFile(join(contextDir, 'Dockerfile'), injectFloorDockerfile(variant, image, mounts, idSuffix))
  const entries = variant === 'cp-a' ? 'Dockerfile data' : ['Dockerfile', ...mounts.map(m => `${m.name}.tar`)].join(' ')
  const r = await sh(`tar -C ${q(contextDir)} -cf - ${entries} | ${BUILD} --build-arg NONCE=${randomUUID()} --output type=cacheonly -`)
  return { name: `inject-${variant}`, description: `inject floor: ${variant}`, seconds: r.seconds, steps: stepSeconds(r.stderr) }
}
