// The per-mount method of the existing tool, reproducible-containers/
// buildkit-cache-dance (v3, src/inject-cache.ts and src/extract-cache.ts at
// 463dbf0), rebuilt step by step for the bench. Not its code: the same
// commands in the same order, so its cost can be measured next to ours on the
// same engine.
//
// For each mount of the cache map, separately:
//
// inject  1. rm -rf scratch-dir; mkdir scratch-dir and the mount's source dir
//         2. write <source>/buildstamp (the date: busts the layer cache)
//         3. write scratch-dir/Dancefile.inject:
//              FROM <utility image>
//              COPY buildstamp buildstamp
//              RUN --mount=type=cache,<options> \
//                  --mount=type=bind,source=.,target=/var/dance-cache \
//                  cp -p -R /var/dance-cache/. <target> [&& chown -R uid:gid <target>] || true
//            (the chown only when uid or gid is among the options)
//         4. docker buildx build --builder <b> -f Dancefile.inject --tag dance:inject <source>
//            (a DIRECTORY context: the files arrive owned by 0:0)
//         5. rm -rf <source>
// extract 1. mkdir scratch-dir; write scratch-dir/buildstamp (the date)
//         2. write scratch-dir/Dancefile.extract:
//              FROM <utility image>
//              COPY buildstamp buildstamp
//              RUN --mount=type=cache,<options> \
//                  mkdir -p /var/dance-cache/ && cp -p -R <target>/. /var/dance-cache/ || true
//         3. docker buildx build --builder <b> -f Dancefile.extract --tag dance:extract --load scratch-dir
//         4. docker rm -f cache-container (errors ignored)
//         5. docker create -ti --name cache-container dance:extract
//         6. docker cp -L cache-container:/var/dance-cache - | tar -H posix -x -C scratch-dir
//         7. sudo rm -rf <source>; rename scratch-dir/dance-cache -> <source>
//         (then the workflow's separate actions/cache step tars <source>.)
//
// Deliberate differences, none of which changes the work done:
// - tag and container names carry a caller-chosen prefix instead of the fixed
//   `dance:*` / `cache-container`, so parallel jobs on this engine do not
//   collide, and `cleanup()` removes what was created (the tool leaves it);
// - `docker create` gets an explicit command (`sh`): the locally imported
//   busybox image has no CMD (ghcr.io/containerd/busybox has one);
// - `sudo` only when it is installed (the bench runs as root);
// - every step is timed.
//
// Standalone: npx tsx scripts/bench/per-mount.ts inject|extract --cache-map JSON
//   [--scratch-dir DIR] [--builder NAME] [--utility-image IMAGE] [--name-prefix P]
import { existsSync } from 'node:fs'
import { mkdir, rename, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'

import { q, sh } from './lib.js'

/** Mount options as in the tool's cache-map: `{ <source dir>: { id, target, uid, gid, ... } }`. */
export type CacheMap = Record<string, Record<string, string | number>>

export interface DanceOptions {
  scratchDir: string
  utilityImage: string
  /** buildx builder (the tool's default: "default"). */
  builder: string
  /** Prefix of the image tags and the container name. */
  namePrefix: string
}

export interface DanceMountTiming {
  source: string
  seconds: number
  /** Seconds per step: build, rm, create, cp+untar, move. */
  steps: Record<string, number>
  buildLog: string
}

const SUDO = existsSync('/usr/bin/sudo') ? 'sudo ' : ''

function mountArgs(options: Record<string, string | number>): string {
  return `type=cache,${Object.entries(options)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')}`
}

function target(options: Record<string, string | number>): string {
  const t = options.target
  if (typeof t !== 'string') throw new Error(`cache-map entry without a target: ${JSON.stringify(options)}`)
  return t
}

/** Everything created by one bench run, for cleanup(). */
export class PerMount {
  private readonly images = new Set<string>()
  constructor(private readonly opts: DanceOptions) {}

  get injectTag(): string {
    return `${this.opts.namePrefix}:inject`
  }
  get extractTag(): string {
    return `${this.opts.namePrefix}:extract`
  }
  get container(): string {
    return `${this.opts.namePrefix}-container`
  }

  private async rememberImage(tag: string): Promise<void> {
    const r = await sh(`docker image inspect -f '{{.Id}}' ${q(tag)}`, { allowFail: true })
    if (r.code === 0) this.images.add(r.stdout.trim())
  }

  async injectCaches(cacheMap: CacheMap): Promise<DanceMountTiming[]> {
    const out: DanceMountTiming[] = []
    for (const [source, options] of Object.entries(cacheMap)) {
      out.push(await this.injectCache(source, options))
      await this.rememberImage(this.injectTag)
    }
    return out
  }

  async extractCaches(cacheMap: CacheMap): Promise<DanceMountTiming[]> {
    const out: DanceMountTiming[] = []
    for (const [source, options] of Object.entries(cacheMap)) {
      out.push(await this.extractCache(source, options))
      await this.rememberImage(this.extractTag)
    }
    return out
  }

  private async injectCache(source: string, options: Record<string, string | number>): Promise<DanceMountTiming> {
    const { scratchDir, utilityImage, builder } = this.opts
    const steps: Record<string, number> = {}
    const started = performance.now()
    let t = performance.now()
    await rm(scratchDir, { recursive: true, force: true })
    await mkdir(scratchDir, { recursive: true })
    await mkdir(source, { recursive: true })
    await writeFile(join(source, 'buildstamp'), new Date().toISOString())
    const uid = options.uid !== undefined ? String(options.uid) : ''
    const gid = options.gid !== undefined ? String(options.gid) : ''
    const ownership = uid !== '' || gid !== '' ? `&& chown -R ${uid}:${gid} ${target(options)}` : ''
    const dancefile = `
FROM ${utilityImage}
COPY buildstamp buildstamp
RUN --mount=${mountArgs(options)} \
    --mount=type=bind,source=.,target=/var/dance-cache \
    cp -p -R /var/dance-cache/. ${target(options)} ${ownership} || true
`
    await writeFile(join(scratchDir, 'Dancefile.inject'), dancefile)
    steps.prepare = (performance.now() - t) / 1000
    const build = await sh(
      `docker buildx build --builder ${q(builder)} -f ${q(join(scratchDir, 'Dancefile.inject'))} --tag ${q(this.injectTag)} --progress=plain ${q(source)}`
    )
    steps.build = build.seconds
    t = performance.now()
    await rm(source, { recursive: true, force: true })
    steps.clean = (performance.now() - t) / 1000
    return { source, seconds: (performance.now() - started) / 1000, steps, buildLog: build.stderr }
  }

  private async extractCache(source: string, options: Record<string, string | number>): Promise<DanceMountTiming> {
    const { scratchDir, utilityImage, builder } = this.opts
    const steps: Record<string, number> = {}
    const started = performance.now()
    let t = performance.now()
    await mkdir(scratchDir, { recursive: true })
    await writeFile(join(scratchDir, 'buildstamp'), new Date().toISOString())
    const dancefile = `
FROM ${utilityImage}
COPY buildstamp buildstamp
RUN --mount=${mountArgs(options)} \
    mkdir -p /var/dance-cache/ \
    && cp -p -R ${target(options)}/. /var/dance-cache/ || true
`
    await writeFile(join(scratchDir, 'Dancefile.extract'), dancefile)
    steps.prepare = (performance.now() - t) / 1000
    const build = await sh(
      `docker buildx build --builder ${q(builder)} -f ${q(join(scratchDir, 'Dancefile.extract'))} --tag ${q(this.extractTag)} --load --progress=plain ${q(scratchDir)}`
    )
    steps.build = build.seconds
    steps.rm = (await sh(`docker rm -f ${q(this.container)}`, { allowFail: true })).seconds
    steps.create = (await sh(`docker create -ti --name ${q(this.container)} ${q(this.extractTag)} sh`)).seconds
    steps.copy = (await sh(`docker cp -L ${q(`${this.container}:/var/dance-cache`)} - | tar -H posix -x -C ${q(scratchDir)}`)).seconds
    t = performance.now()
    await sh(`${SUDO}rm -rf ${q(source)}`)
    await rename(join(scratchDir, 'dance-cache'), source)
    steps.move = (performance.now() - t) / 1000
    return { source, seconds: (performance.now() - started) / 1000, steps, buildLog: build.stderr }
  }

  /** Removes the container and every image the runs created (the tool itself leaves them). */
  async cleanup(): Promise<void> {
    await sh(`docker rm -f ${q(this.container)}`, { allowFail: true })
    for (const id of this.images) await sh(`docker rmi -f ${q(id)}`, { allowFail: true })
    await sh(`docker rmi -f ${q(this.injectTag)} ${q(this.extractTag)}`, { allowFail: true })
    await rm(this.opts.scratchDir, { recursive: true, force: true })
  }
}

async function cli(argv: string[]): Promise<void> {
  const mode = argv[0]
  const flag = (name: string, fallback: string): string => {
    const i = argv.indexOf(`--${name}`)
    return i >= 0 && argv[i + 1] !== undefined ? (argv[i + 1] as string) : fallback
  }
  if (mode !== 'inject' && mode !== 'extract') {
    console.error(
      'usage: per-mount.ts inject|extract --cache-map JSON [--scratch-dir DIR] [--builder NAME] [--utility-image IMAGE] [--name-prefix P]'
    )
    process.exit(2)
  }
  const cacheMap = JSON.parse(flag('cache-map', '{}')) as CacheMap
  const tool = new PerMount({
    scratchDir: resolve(flag('scratch-dir', 'scratch')),
    utilityImage: flag('utility-image', 'buildkit-mount-cache/utility:busybox'),
    builder: flag('builder', 'default'),
    namePrefix: flag('name-prefix', 'dance')
  })
  const timings = mode === 'inject' ? await tool.injectCaches(cacheMap) : await tool.extractCaches(cacheMap)
  for (const t of timings)
    console.log(
      `${mode} ${t.source}: ${t.seconds.toFixed(2)} s ${JSON.stringify(Object.fromEntries(Object.entries(t.steps).map(([k, v]) => [k, Number(v.toFixed(2))])))}`
    )
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  cli(process.argv.slice(2)).catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
}
